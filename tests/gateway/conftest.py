"""A gateway on its own thread and event loop (so sync SDK clients can call it), over a fake upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from router import Router, parse_policy
from router.gateway import Gateway
from router.metrics import PrometheusMetrics
from router.testing import FakeUpstream

T = TypeVar("T")

TEAM_KEY = "team-key-0123456789abcdef"
LIMITED_KEY = "limited-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"

POLICY = """
providers:
  up: {{type: openai_compatible, base_url: "{openai}", api_key: upstream-key-0123456789}}
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: upstream-key-9876543210}}
targets:
  primary: {{provider: up, model: gpt-a, price: {{input: 1000, output: 2000}}, capabilities: {{tools: true}}}}
  backup: {{provider: up, model: gpt-b, price: {{input: 1000, output: 2000}}, capabilities: {{tools: true}}}}
  sonnet: {{provider: claude, model: claude-x, capabilities: {{tools: true}}}}
routes:
  chat:
    targets: [primary, backup]
    retry: {{attempts: 1}}
  solo:
    targets: [primary]
    retry: {{attempts: 1}}
    latency_budget: {{total: 2s}}
  claude: {{targets: [sonnet]}}
aliases: {{fast: chat}}
{gateway}
"""

GATEWAY = f"""
gateway:
  admin_key: {ADMIN_KEY}
  max_body: 65536
  keys:
    team: {{key: {TEAM_KEY}}}
    limited: {{key: {LIMITED_KEY}, routes: [chat], control: [metadata]}}
"""


def policy_text(upstream: FakeUpstream, gateway: str = GATEWAY) -> str:
    return POLICY.format(openai=upstream.base_url, anthropic=upstream.anthropic_base_url, gateway=gateway)


class GatewayServer:
    """`Gateway(Router(policy))` served on a free loopback port from a thread of its own."""

    def __init__(self, text: str, *, path: Path | None = None, metrics: bool = False) -> None:
        """`text` is the policy; with `path` it is written there and the router reads it from the file
        (so that a reload reads it again); `metrics` feeds a Prometheus registry of its own."""
        self._text = text
        self._path = path
        self._metrics = metrics
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway", daemon=True)
        self._runner: web.AppRunner | None = None
        self.gateway: Gateway
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def router(self) -> Router:
        return self.gateway.router

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the gateway's loop (where its router lives)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def start(self) -> GatewayServer:
        self._thread.start()
        self.run(self._astart())
        return self

    async def _astart(self) -> None:
        registry = CollectorRegistry() if self._metrics else None
        hook = PrometheusMetrics(registry) if registry is not None else None
        if self._path is not None:
            self._path.write_text(self._text)
            router = Router.from_file(self._path, on_event=hook)
        else:
            router = Router(parse_policy(self._text), on_event=hook)
        self.gateway = Gateway(router, metrics=registry)
        self._runner = web.AppRunner(self.gateway.app(), access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        async def astop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()
            await self.router.aclose()

        self.run(astop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def server(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    gateway = GatewayServer(policy_text(upstream)).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def open_server(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    gateway = GatewayServer(policy_text(upstream, gateway="")).start()
    try:
        yield gateway
    finally:
        gateway.stop()
