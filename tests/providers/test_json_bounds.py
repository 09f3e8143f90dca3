"""Answers whose JSON would take long to parse (issue 11): refused before parsing, without stalling the loop.

`json.loads` holds the GIL throughout, on the loop or in a thread alike, for a time that grows with
the values: 12 MiB of 1.6 million small values held the loop about half a second. An answer with
more than `MAX_JSON_VALUES` values is a `server_error` and a failover; a long answer of text (few
values, however much punctuation it holds) still comes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from statistics import median
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import Policy, Router
from router.errors import AllTargetsFailed
from router.providers import _http
from router.providers._http import MAX_JSON_VALUES, TooManyValues, check_json_body, check_json_event
from router.testing import FakeUpstream

USER = [{"role": "user", "content": "Hello"}]
LAG_BOUND = 0.05

JUNK = ",".join(['{"a":1}'] * 1_600_000)  # 1.6 million values, about 12 MiB
# 3 MiB of text (4 MiB as JSON): 300 000 commas, 180 000 colons, 120 000 opening brackets
TEXT = 'Lists, maps: [a, b], {"k": "v"}, C:\\path\\, and \u00e9t\u00e9. ' * 60_000


def openai_body(content: str, junk: str = "") -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    text = json.dumps(body)
    return (text[:-1] + f', "junk": [{junk}]}}' if junk else text).encode()


def anthropic_body(content: str, junk: str = "") -> bytes:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": content}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    text = json.dumps(body)
    return (text[:-1] + f', "junk": [{junk}]}}' if junk else text).encode()


class _Bodies(http.server.ThreadingHTTPServer):
    bodies: dict[str, bytes]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Bodies

    def do_POST(self) -> None:  # the stdlib names it
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = self.server.bodies[self.path]  # built beforehand: sending it costs the GIL nothing
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[_Bodies]:
    """A loopback server that answers each path with bytes set beforehand."""
    server = _Bodies(("127.0.0.1", 0), _Handler)
    server.bodies = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def make_router(server: _Bodies, good: FakeUpstream, wire: str, total: str = "10s") -> Router:
    root = f"http://127.0.0.1:{server.server_address[1]}"
    hostile: dict[str, Any] = (
        {"type": "openai", "base_url": root + "/v1", "api_key": "sk-test"}
        if wire == "openai"
        else {"type": "anthropic", "base_url": root, "api_key": "ak-test"}
    )
    budget = {"retry": {"attempts": 1}, "latency_budget": {"total": total}}
    return Router(
        Policy.model_validate(
            {
                "providers": {
                    "hostile": hostile,
                    "good": {"type": "openai_compatible", "base_url": good.base_url, "api_key": "k"},
                },
                "targets": {
                    "bad": {"provider": "hostile", "model": "m"},
                    "good": {"provider": "good", "model": "good-model"},
                },
                "routes": {
                    "chat": {"targets": ["bad", "good"], **budget},
                    "alone": {"targets": ["bad"], **budget},
                    "warm": {"targets": ["good"], **budget},
                },
            }
        )
    )


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """How late each 1 ms tick of the loop came, while the block runs."""
    lags: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            lags.append(now - last - 0.001)
            last = now

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        yield lags
    finally:
        await asyncio.sleep(0.005)  # a tick after the last step of the block, to see how late it came
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def warm_up(router: Router, server: _Bodies, path: str, body: bytes) -> None:
    """A call on each target: the SDKs' first-call costs (imports, clients) stay outside the measure."""
    server.bodies[path] = body
    await router.complete("warm", USER)
    await router.complete("alone", USER)


BODIES = {"openai": ("/v1/chat/completions", openai_body), "anthropic": ("/v1/messages", anthropic_body)}


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_an_answer_of_a_million_values_is_refused_without_stalling_the_loop(
    upstream: _Bodies, fake_upstream: FakeUpstream, wire: str
) -> None:
    path, body = BODIES[wire]
    fake_upstream.set_reply("good-model", "A healthy answer.")
    lags: list[float] = []
    async with make_router(upstream, fake_upstream, wire, total="1s") as router:
        await warm_up(router, upstream, path, body("hi"))
        upstream.bodies[path] = body("hi", JUNK)
        for _ in range(3):
            async with loop_lag() as ticks:
                result = await router.complete("chat", USER)
            lags.append(max(ticks))
        started = time.monotonic()
        with pytest.raises(AllTargetsFailed) as failed:
            await router.complete("alone", USER)
        alone = time.monotonic() - started
    print(f"\n{wire}: a {len(upstream.bodies[path]) / 2**20:.1f} MiB answer of 1.6 M values refused; "
          f"loop lag at most {', '.join(f'{lag * 1000:.1f}' for lag in lags)} ms; "
          f"alone {alone * 1000:.0f} ms")  # fmt: skip
    assert (result.target, result.text) == ("good", "A healthy answer.")
    [first, second] = result.attempts
    assert (first.target, first.outcome, second.outcome) == ("bad", "server_error", "ok")
    assert f"more than {MAX_JSON_VALUES:,} JSON values" in str(first.error)
    assert [attempt.outcome for attempt in failed.value.attempts] == ["server_error"]
    assert median(lags) < LAG_BOUND  # the median of three: a stall would come back every time, noise not
    assert alone < 1.0 + LAG_BOUND  # within the route's deadline


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_long_answer_of_text_still_comes_through_without_stalling_the_loop(
    upstream: _Bodies, fake_upstream: FakeUpstream, wire: str
) -> None:
    path, body = BODIES[wire]
    lags: list[float] = []
    async with make_router(upstream, fake_upstream, wire) as router:
        await warm_up(router, upstream, path, body("hi"))
        upstream.bodies[path] = body(TEXT)
        for _ in range(3):
            async with loop_lag() as ticks:
                result = await router.complete("alone", USER)
            lags.append(max(ticks))
            assert result.text == TEXT
    print(f"\n{wire}: a {len(upstream.bodies[path]) / 2**20:.1f} MiB answer of text; "
          f"loop lag at most {', '.join(f'{lag * 1000:.1f}' for lag in lags)} ms")  # fmt: skip
    assert median(lags) < LAG_BOUND


# --- the count itself ---------------------------------------------------------------------------


def values_outside_strings(text: str) -> int:
    """The reference: commas, colons and opening brackets outside strings, one character at a time."""
    count, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in ",:[{":
            count += 1
    return count


def judged(body: bytes, limit: int) -> bool:
    """Whether `check_json_body` lets `body` through under `limit` (every body counted, in 7-byte slices)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_http, "MAX_JSON_VALUES", limit)
        patch.setattr(_http, "_COUNT_ABOVE", 0)
        patch.setattr(_http, "_SLICE", 7)
        try:
            asyncio.run(check_json_body(body))
        except TooManyValues:
            return False
    return True


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('ab,:[]{}"\\\n\u00e9 ')),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet=st.sampled_from('k,:"\\'), max_size=4), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.booleans())
def test_the_count_is_that_of_the_values_outside_strings(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    count = values_outside_strings(text)
    assert judged(text.encode(), count)
    assert not judged(text.encode(), count - 1)


def test_escapes_at_the_edge_of_a_slice_are_read_whole() -> None:
    for body in (rb'["\\", 1]', rb'["a\"", 1, 2]', rb'["\\\"", {"a": 1}]', rb'["a,b:c[d{e", 1]'):
        count = values_outside_strings(body.decode())
        assert judged(body, count) and not judged(body, count - 1), body


def test_a_huge_stream_event_of_values_is_refused_one_of_text_is_not() -> None:
    check_json_event(json.dumps({"choices": [{"delta": {"content": "a, b: c " * 40_000}}]}))
    with pytest.raises(TooManyValues):
        check_json_event('{"choices": [' + ",".join(["{}"] * (MAX_JSON_VALUES + 1)) + "]}")
