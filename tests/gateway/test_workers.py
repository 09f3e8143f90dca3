"""`router serve --workers 2` as a real subprocess sharing the test Redis: a breaker opened through one
worker is honoured by the other, a key's budget holds across both, SIGTERM finishes the requests in
flight; and the command refuses several workers on in-memory state."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from click.testing import CliRunner

from router.cli import main
from router.testing import FakeUpstream, Fault

from ..redis_support import free_port
from .conftest import ADMIN_KEY, TEAM_KEY, policy_text

HELLO = [{"role": "user", "content": "hello"}]
BUDGET = 0.5  # USD per hour for TEAM_KEY; each answer costs about 0.03 at the prices of the policy
OPS_KEY = "ops-key-0123456789abcdef"  # no budget


@pytest.fixture(scope="module")
def namespace(redis_url: str) -> Iterator[str]:
    name = f"router-test:gateway:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Served:
    """`router serve POLICY --workers N [options]` on a free port, stopped with SIGTERM."""

    def __init__(self, policy: Path, log: Path, workers: int = 2, *options: str) -> None:
        self.policy = policy
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._log = log.open("w")
        command = [sys.executable, "-m", "router.cli", "serve", str(policy), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(workers), *options], stdout=self._log, stderr=subprocess.STDOUT
        )

    async def ready(self, within: float = 30.0) -> set[str]:
        """Wait until every worker answers /readyz (each new connection may reach any of them)."""
        workers: set[str] = set()
        deadline = time.monotonic() + within
        while len(workers) < self.workers:
            assert time.monotonic() < deadline, f"workers seen: {workers}"
            assert self.process.poll() is None, "router serve exited"
            try:
                _, body = await request(self.url, "/readyz", method="GET")
                workers.add(body["worker"])
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        return workers

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self._log.close()


async def request(
    url: str,
    path: str = "/v1/chat/completions",
    *,
    method: str = "POST",
    key: str = OPS_KEY,
    model: str = "chat",
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, Any]:
    """One request; without `session` on a connection of its own (so that either worker may take it)."""
    body = {"model": model, "messages": HELLO, "router": {"trail": True}}
    own = session is None
    session = session or aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    try:
        kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
        headers = {"Authorization": f"Bearer {key}"}
        async with session.request(method, url + path, headers=headers, **kwargs) as response:
            return response.status, await response.json()
    finally:
        if own:
            await session.close()


def fleet_policy(upstream: FakeUpstream, redis_url: str, namespace: str, tmp_path: Path) -> Path:
    # One provider type only: each worker builds its clients as it starts, and every SDK costs its import.
    text = f"""
providers:
  up:
    type: openai_compatible
    base_url: "{upstream.base_url}"
    api_key: upstream-key-0123456789
    breaker: {{fail_max: 2, reset_timeout: 1m, max_reset_timeout: 1m}}
targets:
  primary: {{provider: up, model: gpt-a, price: {{input: 1000, output: 2000}}}}
  backup: {{provider: up, model: gpt-b, price: {{input: 1000, output: 2000}}}}
routes:
  chat: {{targets: [primary, backup], retry: {{attempts: 1}}}}
gateway:
  admin_key: {ADMIN_KEY}
  keys:
    team: {{key: {TEAM_KEY}, budget: {{usd: {BUDGET}}}}}
    ops: {{key: {OPS_KEY}}}
state: {{backend: redis, url: "{redis_url}", namespace: "{namespace}"}}
"""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def fleet_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def served(
    fleet_upstream: FakeUpstream, redis_url: str, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One fleet for the module (spawning it takes seconds); its tests run in order, SIGTERM last."""
    tmp_path = tmp_path_factory.mktemp("served")
    server = Served(fleet_policy(fleet_upstream, redis_url, namespace, tmp_path), tmp_path / "serve.log")
    try:
        asyncio.run(server.ready())
        yield server
    finally:
        server.stop()
        print((tmp_path / "serve.log").read_text())


@pytest.fixture
def upstream(fleet_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    yield fleet_upstream
    fleet_upstream.clear_faults()
    fleet_upstream.reset_log()


async def test_a_keys_budget_holds_across_both_workers(served: Served, upstream: FakeUpstream):
    spent, costs, workers = 0.0, [], set()
    refused: list[int] = []
    for _ in range(200):
        status, body = await request(served.url, key=TEAM_KEY)
        if status == 200:
            refused.clear()  # a worker may answer with what its lease still holds
            spent += body["router"]["cost_usd"]
            costs.append(body["router"]["cost_usd"])
            workers.add(body["router"]["worker"])
            continue
        assert body["error"]["code"] == "key_budget_spent"
        refused.append(status)
        if len(refused) == 6:  # both workers refuse
            break
    assert set(refused) == {429} and len(workers) == 2
    # Overspending is bounded by each worker's lease (a tenth of the budget) and one call each.
    assert BUDGET * 0.5 <= spent <= BUDGET + 2 * (0.1 * BUDGET + max(costs))


async def test_a_breaker_opened_through_one_worker_is_honoured_by_the_other(
    served: Served, upstream: FakeUpstream
):
    upstream.add_fault("gpt-a", Fault.server_error())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one_connection:
        trails = [(await request(served.url, session=one_connection))[1]["router"] for _ in range(2)]
    first = trails[0]["worker"]
    assert {trail["worker"] for trail in trails} == {first}
    assert [a["outcome"] for a in trails[1]["attempts"]] == ["server_error", "ok"]
    assert upstream.count("gpt-a") == 2
    await asyncio.sleep(0.3)  # the trip travels over Redis pub/sub
    for _ in range(40):
        status, body = await request(served.url)
        if body["router"]["worker"] != first:
            break
    else:
        pytest.fail("no connection reached the second worker")
    assert status == 200
    first_attempt = body["router"]["attempts"][0]
    assert (first_attempt["target"], first_attempt["outcome"]) == ("primary", "breaker_open")
    assert upstream.count("gpt-a") == 2  # the second worker never called it


async def test_sighup_reloads_every_worker(served: Served, upstream: FakeUpstream):
    """SIGHUP to `router serve` reaches both workers: a route added to the file is served by each."""
    policy = served.policy
    policy.write_text(policy.read_text().replace("routes:\n", "routes:\n  fresh: {targets: [backup]}\n"))
    served.process.send_signal(signal.SIGHUP)
    answered: set[str] = set()
    deadline = time.monotonic() + 20
    while len(answered) < 2:
        assert time.monotonic() < deadline, f"workers that reloaded: {answered}"
        status, body = await request(served.url, model="fresh")
        if status == 200:
            answered.add(body["router"]["worker"])
    assert served.process.poll() is None


async def test_an_admin_reload_reaches_every_worker(served: Served, upstream: FakeUpstream):
    """POST /admin/reload, taken by one worker, reloads the other too: one policy behind the port."""
    policy = served.policy
    policy.write_text(policy.read_text().replace("routes:\n", "routes:\n  edited: {targets: [backup]}\n"))
    status, _ = await request(served.url, "/admin/reload", key=ADMIN_KEY)
    assert status == 200
    answered: set[str] = set()
    deadline = time.monotonic() + 20
    while len(answered) < 2:
        assert time.monotonic() < deadline, f"workers that reloaded: {answered}"
        status, body = await request(served.url, model="edited")
        if status == 200:
            answered.add(body["router"]["worker"])


async def test_sigterm_finishes_the_requests_in_flight(served: Served, upstream: FakeUpstream):
    upstream.add_fault("*", Fault.delay(0.6), times=1)  # primary's breaker may be open: any target
    in_flight = asyncio.ensure_future(request(served.url))
    await asyncio.to_thread(_until, lambda: upstream.count() > 0)
    served.process.send_signal(signal.SIGTERM)
    status, body = await in_flight
    assert status == 200 and body["choices"][0]["message"]["content"].startswith("Hello from gpt-")
    assert await asyncio.to_thread(served.process.wait, 20) == 0


async def test_watch_reloads_the_policy_when_its_file_changes(
    fleet_upstream: FakeUpstream, redis_url: str, namespace: str, tmp_path: Path
):
    policy = fleet_policy(fleet_upstream, redis_url, f"{namespace}:watch", tmp_path)
    server = Served(policy, tmp_path / "watch.log", 1, "--watch")
    try:
        await server.ready()
        assert (await request(server.url, model="watched"))[0] == 400  # no such route yet
        edited = policy.read_text().replace("routes:\n", "routes:\n  watched: {targets: [backup]}\n")
        policy.write_text(edited)
        deadline = time.monotonic() + 20
        while (await request(server.url, model="watched"))[0] != 200:  # no signal, no admin call
            assert time.monotonic() < deadline, (tmp_path / "watch.log").read_text()
            await asyncio.sleep(0.1)
    finally:
        assert server.stop() == 0


def test_several_workers_on_in_memory_state_are_refused(upstream: FakeUpstream, tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(upstream))
    result = CliRunner().invoke(main, ["serve", str(path), "--workers", "2"])
    assert result.exit_code == 2 and "backend: redis" in result.output


def test_a_policy_that_does_not_load_exits_2(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text("routes: [")
    result = CliRunner().invoke(main, ["serve", str(path)])
    assert result.exit_code == 2 and "policy.yaml:1" in result.output


def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)
