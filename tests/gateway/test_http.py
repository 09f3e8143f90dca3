"""Raw HTTP against the gateway: keys, per-request control, every error status, hostile bodies."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest

from router.testing import FakeUpstream, Fault

from .conftest import LIMITED_KEY, TEAM_KEY, GatewayServer

HELLO = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"


async def post(
    server: GatewayServer,
    body: Any,
    *,
    key: str | None = TEAM_KEY,
    path: str = CHAT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, data=data, headers=sent) as r,
    ):
        text = await r.text()
        return r.status, json.loads(text) if text.startswith("{") else {"text": text}, dict(r.headers)


def chat(model: str = "chat", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **fields}


# -- keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef", ""])
async def test_a_missing_or_unknown_key_is_401_and_names_no_key(server: GatewayServer, key: str | None):
    status, body, headers = await post(server, chat(), key=key)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert headers["x-router-error-kind"] == "unauthorized"
    text = json.dumps(body)
    assert "team" not in text and "limited" not in text and (not key or key not in text)


async def test_x_api_key_is_accepted_as_anthropic_clients_send_it(server: GatewayServer):
    status, _, _ = await post(server, chat(), key=None, headers={"x-api-key": TEAM_KEY})
    assert status == 200


async def test_a_key_may_only_name_its_routes_and_their_aliases(server: GatewayServer):
    assert (await post(server, chat("chat"), key=LIMITED_KEY))[0] == 200
    assert (await post(server, chat("fast"), key=LIMITED_KEY))[0] == 200
    status, body, _ = await post(server, chat("solo"), key=LIMITED_KEY)
    assert (
        status == 403 and body["error"]["type"] == "permission_error" and "'solo'" in body["error"]["message"]
    )
    assert (await post(server, chat("up:gpt-z"), key=LIMITED_KEY))[0] == 403


async def test_a_key_may_only_set_its_controls(server: GatewayServer):
    ok = await post(server, chat(metadata={"team": "a"}), key=LIMITED_KEY)
    assert ok[0] == 200
    status, body, _ = await post(server, chat(), key=LIMITED_KEY, headers={"x-router-targets": "backup"})
    assert status == 403 and "targets" in body["error"]["message"]
    status, _, _ = await post(server, chat(router={"trail": True}), key=LIMITED_KEY)
    assert status == 403


async def test_models_lists_only_what_the_key_may_name(server: GatewayServer):
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/v1/models", headers={"x-api-key": LIMITED_KEY}) as r:
            names = {m["id"] for m in (await r.json())["data"]}
        async with session.get(server.url + "/v1/models") as r:
            assert r.status == 401
    assert names == {"chat", "fast"}


async def test_the_open_gateway_takes_anyone(open_server: GatewayServer):
    status, _, headers = await post(open_server, chat(), key=None)
    assert status == 200 and headers["x-router-target"] == "primary"


async def test_key_rpm_is_429_with_its_kind(upstream: FakeUpstream):
    from .conftest import POLICY

    text = POLICY.format(
        openai=upstream.base_url,
        anthropic=upstream.anthropic_base_url,
        gateway=f"gateway: {{keys: {{team: {{key: {TEAM_KEY}, rpm: 2}}}}}}",
    )
    server = GatewayServer(text).start()
    try:
        statuses = [(await post(server, chat()))[0] for _ in range(4)]
        status, body, headers = await post(server, chat())
    finally:
        server.stop()
    assert statuses[:2] == [200, 200] and 429 in statuses
    assert (status, headers["x-router-error-kind"]) == (429, "key_rate_limited")
    assert body["error"]["type"] == "rate_limit_error"


# -- per-request control ----------------------------------------------------------------------------


async def test_targets_from_a_header_or_the_body(server: GatewayServer):
    _, _, headers = await post(server, chat(), headers={"x-router-targets": "backup,primary"})
    assert headers["x-router-target"] == "backup"
    _, _, headers = await post(server, chat(router={"targets": ["backup"]}))
    assert headers["x-router-target"] == "backup"


async def test_attempts_and_the_trail_from_headers(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.server_error(), times=2)
    status, body, headers = await post(
        server, chat(), headers={"x-router-attempts": "3", "x-router-trail": "true"}
    )
    assert status == 200 and headers["x-router-target"] == "primary" and headers["x-router-attempts"] == "3"
    assert [a["outcome"] for a in body["router"]["attempts"]] == ["server_error", "server_error", "ok"]


@pytest.mark.parametrize(
    "headers",
    [{"x-router-deadline": "-1"}, {"x-router-attempts": "many"}, {"x-router-nonsense": "1"}],
)
async def test_bad_control_values_are_400(server: GatewayServer, headers: dict[str, str]):
    status, body, _ = await post(server, chat(), headers=headers)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_a_target_outside_the_route_is_400(server: GatewayServer):
    status, _, _ = await post(server, chat(router={"targets": ["no-such-target"]}))
    assert status == 400


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "invalid_json"),
        (b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
        (["a", "list"], "invalid_request"),
        ({"messages": HELLO}, "invalid_request"),
        ({"model": "chat", "messages": []}, "invalid_request"),
        ({"model": "chat", "messages": "hello"}, "invalid_request"),
        ({"model": 7, "messages": HELLO}, "invalid_request"),
        ({"model": "no-such-route", "messages": HELLO}, "invalid_request"),
        (chat(n=2), "invalid_request"),
        (chat(max_tokens="ten"), "invalid_request"),
        (chat(stream="yes"), "invalid_request"),
        ({"model": "chat", "messages": [{"content": "no role"}]}, "invalid_request"),
    ],
)
async def test_the_callers_mistakes_are_400(
    server: GatewayServer, upstream: FakeUpstream, body: Any, kind: str
):
    status, answer, headers = await post(server, body)
    assert (status, headers["x-router-error-kind"]) == (400, kind)
    assert set(answer["error"]) >= {"message", "type", "code"}
    assert upstream.count() == 0


async def test_a_body_over_the_limit_is_413(server: GatewayServer, upstream: FakeUpstream):
    big = chat(messages=[{"role": "user", "content": "x" * 70_000}])
    status, body, _ = await post(server, big)
    assert status == 413 and body["error"]["code"] == "too_large"
    bomb = gzip.compress(json.dumps(chat(padding=" " * 5_000_000)).encode())
    assert len(bomb) < 65_536
    status, _, _ = await post(server, bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and upstream.count() == 0


async def test_every_candidate_rate_limited_is_429(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("*", Fault.rate_limited())
    status, body, headers = await post(server, chat())
    assert (status, headers["x-router-error-kind"], headers["x-router-attempts"]) == (
        429,
        "rate_limited",
        "2",
    )
    assert body["error"]["type"] == "rate_limit_error"


async def test_every_candidate_failing_is_502(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.server_error())
    upstream.add_fault("gpt-b", Fault.http(503))
    status, body, headers = await post(server, chat())
    assert (status, headers["x-router-error-kind"]) == (502, "server_error")
    assert "primary" in body["error"]["message"] and "backup" in body["error"]["message"]


async def test_the_deadline_is_504(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.hang())
    status, body, headers = await post(server, chat("solo"), headers={"x-router-deadline": "300ms"})
    assert (status, headers["x-router-error-kind"]) == (504, "deadline")
    assert body["error"]["type"] == "timeout_error"


async def test_anthropic_errors_are_anthropic_json(server: GatewayServer):
    status, body, _ = await post(server, {"model": "chat"}, path="/v1/messages")
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body, _ = await post(server, {"model": "chat", "messages": HELLO}, path="/v1/messages", key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"


async def test_a_stream_that_fails_before_its_first_token_is_an_http_error(
    server: GatewayServer, upstream: FakeUpstream
):
    upstream.add_fault("gpt-a", Fault.server_error())
    status, body, _ = await post(server, chat("solo", stream=True))
    assert status == 502 and body["error"]["code"] == "server_error"


async def test_a_stream_that_breaks_after_output_restarts_on_the_next_target(
    server: GatewayServer, upstream: FakeUpstream
):
    upstream.set_reply("gpt-a", "one two three four")
    upstream.add_fault("gpt-a", Fault.cut(2), times=1)
    status, body, _ = await post(server, chat(stream=True, router={"stream_recovery": "restart"}))
    events = [line.removeprefix("data: ") for line in body["text"].splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    restarts = [chunk["router"]["restart"] for chunk in chunks if "router" in chunk]
    assert len(restarts) == 1 and restarts[0]["broken"] == "primary" and restarts[0]["target"] == "backup"
    after = chunks[chunks.index(next(c for c in chunks if "router" in c)) + 1 :]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in after if c["choices"]) == (
        "Hello from gpt-b."
    )


async def test_a_stream_that_breaks_after_output_ends_with_an_error_event(
    server: GatewayServer, upstream: FakeUpstream
):
    upstream.set_reply("gpt-a", "one two three four")
    upstream.add_fault("gpt-a", Fault.cut(2), times=1)
    status, body, _ = await post(server, chat("solo", stream=True))
    events = [line.removeprefix("data: ") for line in body["text"].splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] != "[DONE]"  # the stream did not end as if whole
    last = json.loads(events[-1])
    assert set(last) == {"error"} and last["error"]["code"] != "internal_error", last
