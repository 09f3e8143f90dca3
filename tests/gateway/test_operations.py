"""Operating the gateway: health, readiness, metrics, the admin endpoints, hot reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.testing import FakeUpstream

from .conftest import ADMIN_KEY, GATEWAY, POLICY, TEAM_KEY, GatewayServer, policy_text

HELLO = [{"role": "user", "content": "hello"}]


async def call(
    server: GatewayServer, method: str, path: str, key: str | None = None, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body, headers=headers) as r,
    ):
        text = await r.text()
        is_json = r.content_type == "application/json"
        return r.status, (await r.json()) if is_json else text, dict(r.headers)


async def ask(server: GatewayServer) -> tuple[int, dict[str, str]]:
    status, _, headers = await call(
        server, "POST", "/v1/chat/completions", TEAM_KEY, {"model": "chat", "messages": HELLO}
    )
    return status, headers


async def test_healthz_and_readyz(server: GatewayServer):
    assert (await call(server, "GET", "/healthz"))[:2] == (200, {"status": "ok"})
    status, body, _ = await call(server, "GET", "/readyz")
    assert status == 200 and body["status"] == "ready" and body["state"] == "ok"


async def test_readyz_is_degraded_while_redis_is_down(upstream: FakeUpstream):
    from tests.redis_support import free_port

    state = f"state: {{backend: redis, url: 'redis://127.0.0.1:{free_port()}/0', socket_timeout: 50ms}}"
    server = GatewayServer(policy_text(upstream) + state).start()
    try:
        status, body, _ = await call(server, "GET", "/readyz")
        answered, _ = await ask(server)
    finally:
        server.stop()
    assert (status, body["status"], body["state"]) == (200, "degraded", "degraded")
    assert answered == 200  # the worker serves on its local state


async def test_metrics_show_the_routers_events(upstream: FakeUpstream):
    server = GatewayServer(policy_text(upstream), metrics=True).start()
    try:
        await ask(server)
        status, text, headers = await call(server, "GET", "/metrics")
    finally:
        server.stop()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'router_attempts_total{outcome="ok",route="chat",target="primary"} 1.0' in text


async def test_metrics_without_a_registry_are_404(server: GatewayServer):
    assert (await call(server, "GET", "/metrics"))[0] == 404


@pytest.mark.parametrize("path", ["/admin/status", "/admin/reload", "/admin/drain/primary"])
async def test_admin_needs_the_admin_key(server: GatewayServer, path: str):
    method = "GET" if path.endswith("status") else "POST"
    assert (await call(server, method, path))[0] == 401
    assert (await call(server, method, path, TEAM_KEY))[0] == 401


async def test_without_an_admin_key_there_is_no_admin(open_server: GatewayServer):
    assert (await call(open_server, "GET", "/admin/status", ADMIN_KEY))[0] == 404


async def test_drain_and_restore_a_target(server: GatewayServer):
    status, body, _ = await call(server, "POST", "/admin/drain/primary", ADMIN_KEY)
    assert (status, body) == (200, {"target": "primary", "drained": True})
    assert (await ask(server))[1]["x-router-target"] == "backup"
    _, status_body, _ = await call(server, "GET", "/admin/status", ADMIN_KEY)
    rows = {row["target"]: row for row in status_body["targets"]}
    assert rows["primary"]["drained"] is True and rows["primary"]["breaker"] == "closed"
    await call(server, "POST", "/admin/restore/primary", ADMIN_KEY)
    assert (await ask(server))[1]["x-router-target"] == "primary"
    assert (await call(server, "POST", "/admin/drain/nope", ADMIN_KEY))[0] == 404


async def test_reload_takes_a_good_edit_and_keeps_the_last_good_policy(
    upstream: FakeUpstream, tmp_path: Path
):
    path = tmp_path / "policy.yaml"
    server = GatewayServer(policy_text(upstream), path=path).start()
    try:
        good = POLICY.format(
            openai=upstream.base_url, anthropic=upstream.anthropic_base_url, gateway=GATEWAY
        ).replace("targets: [primary, backup]", "targets: [backup, primary]")
        path.write_text(good)
        status, body, _ = await call(server, "POST", "/admin/reload", ADMIN_KEY)
        assert (status, body["policy_version"]) == (200, 2)
        assert (await ask(server))[1]["x-router-target"] == "backup"
        path.write_text(good.replace("routes:", "routes: [broken"))
        status, body, _ = await call(server, "POST", "/admin/reload", ADMIN_KEY)
        assert status == 422 and body["issues"] and body["policy_version"] == 2
        assert (await ask(server))[1]["x-router-target"] == "backup"
    finally:
        server.stop()


async def test_a_reload_replaces_the_keys(upstream: FakeUpstream, tmp_path: Path):
    path = tmp_path / "policy.yaml"
    server = GatewayServer(policy_text(upstream), path=path).start()
    try:
        new_key = "rotated-key-0123456789abcdef"
        path.write_text(policy_text(upstream).replace(TEAM_KEY, new_key))
        assert (await call(server, "POST", "/admin/reload", ADMIN_KEY))[0] == 200
        assert (await ask(server))[0] == 401
        status, _, _ = await call(
            server, "POST", "/v1/chat/completions", new_key, {"model": "chat", "messages": HELLO}
        )
        assert status == 200
    finally:
        server.stop()
