"""The fake upstream, seen through the real openai SDK: every fault as a client meets it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from router.testing import FakeUpstream, Fault, RequestRecord

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello, please."}]


@pytest.fixture
async def client(fake_upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=fake_upstream.base_url, api_key="sk-test-secret", max_retries=0, timeout=2.0
    )
    yield client
    await client.close()


async def complete(client: openai.AsyncOpenAI, model: str = "gpt-4o", **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model=model, messages=kwargs.pop("messages", MESSAGES), **kwargs
    )


async def stream_lines(
    client: openai.AsyncOpenAI,
    model: str = "gpt-4o",
    *,
    lines: list[tuple[float, str]] | None = None,
    **kwargs: Any,
) -> tuple[list[tuple[float, str]], Exception | None]:
    """The non-empty raw SSE lines with their arrival time since the call, and the error that ended them.

    Lines are appended to `lines` as they arrive when a list is given.
    """
    started = time.monotonic()
    lines = [] if lines is None else lines
    try:
        async with client.chat.completions.with_streaming_response.create(
            model=model, messages=MESSAGES, stream=True, **kwargs
        ) as response:
            async for line in response.iter_lines():
                if line:
                    lines.append((time.monotonic() - started, line))
    except Exception as exc:
        return lines, exc
    return lines, None


def chunks(lines: list[tuple[float, str]]) -> list[dict[str, Any]]:
    return [json.loads(line.removeprefix("data: ")) for _, line in lines if line != "data: [DONE]"]


def finish_reasons(lines: list[tuple[float, str]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"]
        for c in chunks(lines)
        if c["choices"] and c["choices"][0]["finish_reason"]
    ]


async def wait_for_requests(upstream: FakeUpstream, count: int) -> None:
    for _ in range(400):
        if upstream.count() >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the upstream saw {upstream.count()} request(s), expected {count}")


# --- healthy answers -------------------------------------------------------------------------


async def test_completion_has_the_openai_shape(client: openai.AsyncOpenAI) -> None:
    completion = await complete(client)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from gpt-4o."
    assert completion.choices[0].finish_reason == "stop"
    prompt_chars = len(MESSAGES[0]["content"])
    assert completion.usage.prompt_tokens == prompt_chars // 4 + 1
    assert completion.usage.completion_tokens == len("Hello from gpt-4o.") // 4 + 1
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_stream_splits_the_reply_and_ends_with_usage_and_done(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.set_reply("gpt-4o", "The quick brown fox.")

    stream = await complete(client, stream=True, stream_options={"include_usage": True})
    parsed = [chunk async for chunk in stream]
    lines, error = await stream_lines(client, stream_options={"include_usage": True})

    text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert text == "The quick brown fox."
    assert sum(1 for c in parsed if c.choices and c.choices[0].delta.content) == 4
    assert parsed[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in parsed if c.choices][-1] == "stop"
    assert parsed[-1].choices == [] and parsed[-1].usage is not None
    assert parsed[-1].usage.completion_tokens == len(text) // 4 + 1
    assert error is None
    assert lines[-1][1] == "data: [DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks(lines))


async def test_stream_without_include_usage_sends_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    lines, error = await stream_lines(client)

    assert error is None
    assert all(c["choices"] and "usage" not in c for c in chunks(lines))
    assert finish_reasons(lines) == ["stop"]
    assert lines[-1][1] == "data: [DONE]"


async def test_models_lists_configured_and_seen_models(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.set_reply("gpt-4o-mini", "hi")
    fake_upstream.add_fault("o3", Fault.unavailable())
    fake_upstream.add_fault("*", Fault.no_done())
    await complete(client, "gpt-4.1")

    models = await client.models.list()

    assert [m.id for m in models.data] == ["gpt-4o-mini", "o3", "gpt-4.1"]


async def test_invalid_request_body_is_a_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await complete(client, messages=[])


def test_serves_sync_clients() -> None:
    with FakeUpstream() as upstream:
        client = openai.OpenAI(base_url=upstream.base_url, api_key="test", max_retries=0, timeout=2.0)
        with client:
            completion = client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from m."


# --- status faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "headers"),
    [
        (Fault.rate_limited(), openai.RateLimitError, 429, {}),
        (Fault.rate_limited(retry_after=2), openai.RateLimitError, 429, {"retry-after": "2"}),
        (Fault.rate_limited(retry_after_ms=1500), openai.RateLimitError, 429, {"retry-after-ms": "1500"}),
        (Fault.server_error(), openai.InternalServerError, 500, {}),
        (Fault.unavailable(), openai.InternalServerError, 503, {}),
        (Fault.unauthorized(), openai.AuthenticationError, 401, {}),
        (Fault.forbidden(), openai.PermissionDeniedError, 403, {}),
        (Fault.http(502), openai.InternalServerError, 502, {}),
    ],
    ids=["429", "429-retry-after", "429-retry-after-ms", "500", "503", "401", "403", "502"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_status_faults_raise_the_matching_openai_error(
    fake_upstream: FakeUpstream,
    client: openai.AsyncOpenAI,
    fault: Fault,
    error_class: type[openai.APIStatusError],
    status: int,
    headers: dict[str, str],
    stream: bool,
) -> None:
    fake_upstream.add_fault("gpt-4o", fault)

    with pytest.raises(error_class) as caught:
        await complete(client, stream=stream)

    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["message"]
    for name in ("retry-after", "retry-after-ms"):
        assert caught.value.response.headers.get(name) == headers.get(name)


async def test_context_length_fault(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.context_length(8192))

    with pytest.raises(openai.BadRequestError) as caught:
        await complete(client)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.type == "invalid_request_error"
    assert "maximum context length is 8192 tokens" in caught.value.message


async def test_content_filter_fault_names_its_reason(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.content_filter("violence"))

    with pytest.raises(openai.BadRequestError) as caught:
        await complete(client)

    assert caught.value.code == "content_filter"
    assert "violence" in caught.value.message


async def test_reject_prefill_only_rejects_a_trailing_assistant_message(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("claude-ish", Fault.reject_prefill())
    prefill = [*MESSAGES, {"role": "assistant", "content": "Sure:"}]

    with pytest.raises(openai.BadRequestError) as caught:
        await complete(client, "claude-ish", messages=prefill)
    completion = await complete(client, "claude-ish")

    assert caught.value.type == "invalid_request_error"
    assert "prefill" in caught.value.message
    assert completion.choices[0].message.content == "Hello from claude-ish."
    assert [(r.fault, r.status) for r in fake_upstream.log] == [("reject_prefill", 400), ("ok", 200)]


# --- connection faults -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_reset_is_a_connection_error(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI, stream: bool
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.reset())

    with pytest.raises(openai.APIConnectionError) as caught:
        await complete(client, stream=stream)

    assert not isinstance(caught.value, openai.APITimeoutError)
    assert fake_upstream.log[-1].status is None


async def test_hang_times_out_and_the_server_carries_on(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.hang(), times=1)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await complete(client, timeout=0.2)
    waited = time.monotonic() - started
    completion = await complete(client)

    assert 0.2 <= waited < 1.0
    assert completion.choices[0].finish_reason == "stop"


async def test_stop_ends_a_hanging_request_at_once(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.hang())
    call = asyncio.create_task(complete(client, timeout=10.0))
    await wait_for_requests(fake_upstream, 1)

    started = time.monotonic()
    fake_upstream.stop()
    stopped_in = time.monotonic() - started
    with pytest.raises(openai.APIConnectionError) as caught:
        await asyncio.wait_for(call, 1.0)

    assert stopped_in < 0.5
    assert not isinstance(caught.value, openai.APITimeoutError)


async def test_stop_ends_a_stalled_stream_at_once(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.stall(2, 30.0))
    received: list[tuple[float, str]] = []
    call = asyncio.create_task(stream_lines(client, lines=received, timeout=10.0))
    for _ in range(400):
        if len(received) == 2:
            break
        await asyncio.sleep(0.005)

    started = time.monotonic()
    fake_upstream.stop()
    stopped_in = time.monotonic() - started
    lines, error = await asyncio.wait_for(call, 1.0)

    assert stopped_in < 0.5
    assert len(lines) == 2, lines
    assert isinstance(error, httpx2.TransportError | openai.APIConnectionError), repr(error)


# --- slow answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_delay_holds_the_response_head(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI, stream: bool
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.delay(0.2))

    started = time.monotonic()
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=stream
    ):
        pass

    assert time.monotonic() - started >= 0.2
    assert fake_upstream.log[-1].fault == "delay"


async def test_slow_first_token_sends_headers_then_waits(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.slow_first_token(0.2))

    started = time.monotonic()
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        headers_after = time.monotonic() - started
        first_line_after = None
        async for line in response.iter_lines():
            if line and first_line_after is None:
                first_line_after = time.monotonic() - started

    assert first_line_after is not None and first_line_after >= 0.2
    assert first_line_after - headers_after >= 0.1


async def test_latency_stays_within_its_jitter(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.latency(0.1, 0.05))

    durations = []
    for _ in range(3):
        started = time.monotonic()
        await complete(client)
        durations.append(time.monotonic() - started)

    assert all(0.05 <= d < 0.4 for d in durations)
    assert [r.fault for r in fake_upstream.log] == ["latency"] * 3


# --- broken streams --------------------------------------------------------------------------


async def test_cut_ends_the_stream_mid_answer(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.cut(2))

    lines, error = await stream_lines(client)

    assert len(lines) == 2, (lines, error)
    assert chunks(lines)[1]["choices"][0]["delta"]["content"] == "Hello"
    assert finish_reasons(lines) == []
    assert "data: [DONE]" not in [line for _, line in lines]
    assert isinstance(error, httpx2.RemoteProtocolError), repr(error)


async def test_cut_past_the_content_still_comes_before_finish(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.cut(100))

    lines, error = await stream_lines(client, stream_options={"include_usage": True})

    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(lines)) == "Hello from gpt-4o."
    assert finish_reasons(lines) == []
    assert error is not None


async def test_stall_pauses_mid_stream_then_finishes(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.stall(2, 0.2))

    lines, error = await stream_lines(client)

    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(lines)]
    assert error is None
    assert gaps[1] >= 0.15  # measured at the client, so a little under the 0.2 s stall
    assert max(gaps) == gaps[1]
    assert finish_reasons(lines) == ["stop"]
    assert lines[-1][1] == "data: [DONE]"


async def test_malformed_line_then_the_stream_carries_on(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.malformed(2))

    lines, error = await stream_lines(client)

    def parses(line: str) -> bool:
        try:
            json.loads(line.removeprefix("data: "))
        except ValueError:
            return False
        return True

    bad = [index for index, (_, line) in enumerate(lines) if line != "data: [DONE]" and not parses(line)]
    assert error is None
    assert bad == [2]
    lines.pop(2)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(lines)) == "Hello from gpt-4o."
    assert finish_reasons(lines) == ["stop"]
    assert lines[-1][1] == "data: [DONE]"


async def test_no_done_finishes_properly_without_done(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.no_done())

    lines, error = await stream_lines(client, stream_options={"include_usage": True})

    assert error is None
    assert finish_reasons(lines) == ["stop"]
    assert chunks(lines)[-1]["usage"]["total_tokens"] > 0
    assert "data: [DONE]" not in [line for _, line in lines]


# --- garbage that looks like success ---------------------------------------------------------


async def test_html_body_with_200(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.html())

    response = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.http_response.text


async def test_invalid_json_body_with_200(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.invalid_json())

    with pytest.raises(ValueError):
        await complete(client)

    assert fake_upstream.log[-1].status == 200


async def test_empty_choices(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.empty_choices())

    completion = await complete(client)
    lines, _ = await stream_lines(client)

    assert completion.choices == []
    assert lines == [lines[0]] and lines[0][1] == "data: [DONE]"


async def test_truncated_answer_finishes_with_length(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.set_reply("gpt-4o", "one two three four")
    fake_upstream.add_fault("gpt-4o", Fault.truncated())

    completion = await complete(client)
    lines, _ = await stream_lines(client)

    assert completion.choices[0].message.content == "one two"
    assert completion.choices[0].finish_reason == "length"
    assert finish_reasons(lines) == ["length"]


# --- scoping ---------------------------------------------------------------------------------


async def outcomes(client: openai.AsyncOpenAI, count: int, model: str = "gpt-4o") -> list[int]:
    statuses = []
    for _ in range(count):
        try:
            await complete(client, model)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
        else:
            statuses.append(200)
    return statuses


async def test_times_limits_how_often_a_fault_strikes(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.server_error(), times=1)

    assert await outcomes(client, 3) == [500, 200, 200]


async def test_after_lets_the_first_requests_through(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.unavailable(), after=2, times=2)

    assert await outcomes(client, 5) == [200, 200, 503, 503, 200]


async def test_outage_window_then_healthy(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.unavailable(), end=fake_upstream.elapsed() + 0.15)

    before = await outcomes(client, 2)
    await asyncio.sleep(0.16)
    after = await outcomes(client, 2)

    assert (before, after) == ([503, 503], [200, 200])


async def test_window_can_open_later(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.unavailable(), start=fake_upstream.elapsed() + 0.1)

    before = await outcomes(client, 1)
    await asyncio.sleep(0.11)
    after = await outcomes(client, 1)

    assert (before, after) == ([200], [503])


async def test_probability_is_an_error_rate_from_the_seed(client: openai.AsyncOpenAI) -> None:
    patterns = []
    for _ in range(2):
        with FakeUpstream(seed=42) as upstream:
            upstream.add_fault("*", Fault.server_error(), probability=0.3)
            other = openai.AsyncOpenAI(base_url=upstream.base_url, api_key="test", max_retries=0, timeout=2.0)
            async with other:
                patterns.append(await outcomes(other, 60))

    assert patterns[0] == patterns[1]
    assert 8 <= patterns[0].count(500) <= 30


async def test_faults_target_one_model_or_any(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.forbidden())

    assert await outcomes(client, 1, "gpt-4o") + await outcomes(client, 1, "o3") == [403, 200]

    fake_upstream.clear_faults()
    fake_upstream.add_fault("*", Fault.server_error())

    assert await outcomes(client, 1, "gpt-4o") + await outcomes(client, 1, "o3") == [500, 500]


async def test_the_first_fault_that_strikes_wins(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.rate_limited(), times=1)
    fake_upstream.add_fault("*", Fault.server_error(), times=1)
    fake_upstream.add_fault("gpt-4o", Fault.unavailable(), after=3)

    assert await outcomes(client, 5) == [429, 500, 200, 503, 503]


async def test_stream_faults_leave_plain_requests_alone(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.cut(1), times=1)

    completion = await complete(client)
    lines, error = await stream_lines(client)

    assert completion.choices[0].finish_reason == "stop"
    assert len(lines) == 1 and error is not None
    assert [(r.stream, r.fault) for r in fake_upstream.log] == [(False, "ok"), (True, "cut")]


# --- attempt log -----------------------------------------------------------------------------


async def test_log_records_every_request(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.add_fault("o3", Fault.rate_limited(retry_after=1), times=1)
    await complete(client)
    await outcomes(client, 2, "o3")
    await stream_lines(client)
    await client.models.list()

    log = fake_upstream.log

    assert [(r.model, r.stream, r.fault, r.status) for r in log] == [
        ("gpt-4o", False, "ok", 200),
        ("o3", False, "http_429", 429),
        ("o3", False, "ok", 200),
        ("gpt-4o", True, "ok", 200),
        ("", False, "ok", 200),
    ]
    assert [r.path for r in log] == ["/v1/chat/completions"] * 4 + ["/v1/models"]
    assert {r.wire for r in log} == {"openai"}
    assert all(isinstance(r, RequestRecord) and r.method in ("GET", "POST") for r in log)
    assert [r.at for r in log] == sorted(r.at for r in log) and log[0].at >= 0
    assert "secret" not in repr(log)
    assert (fake_upstream.count(), fake_upstream.count("o3"), fake_upstream.count("nope")) == (4, 2, 0)
    with pytest.raises(AttributeError):
        log[0].fault = "x"  # type: ignore[misc]

    fake_upstream.reset_log()

    assert fake_upstream.log == [] and fake_upstream.count() == 0


async def test_log_is_a_snapshot(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    snapshot = fake_upstream.log
    await complete(client)

    assert snapshot == [] and len(fake_upstream.log) == 1


# --- lifecycle -------------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_start_and_stop_are_quick_and_leak_nothing() -> None:
    threads_before = threading.active_count()
    fds_before = open_fds()

    for _ in range(5):
        started = time.monotonic()
        upstream = FakeUpstream().start()
        start_took = time.monotonic() - started
        port = upstream.port
        started = time.monotonic()
        upstream.stop()
        stop_took = time.monotonic() - started
        assert start_took < 0.2 and stop_took < 0.2
        with socket.socket() as probe:  # the port is free again
            probe.bind(("127.0.0.1", port))

    assert threading.active_count() == threads_before
    assert open_fds() == fds_before


def test_lifecycle_guards() -> None:
    upstream = FakeUpstream()
    with pytest.raises(RuntimeError):
        _ = upstream.port
    upstream.stop()  # stopping what never started is harmless

    with upstream:
        assert upstream.running
        assert upstream.base_url == f"http://127.0.0.1:{upstream.port}/v1"
        with pytest.raises(RuntimeError):
            upstream.start()
    assert not upstream.running
    upstream.stop()


def test_a_taken_port_fails_to_start_and_leaks_nothing() -> None:
    threads_before = threading.active_count()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        upstream = FakeUpstream(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            upstream.start()

    assert not upstream.running
    assert threading.active_count() == threads_before


def test_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeUpstream(port=port) as upstream:
        assert upstream.port == port


# --- clients that walk away ------------------------------------------------------------------


async def test_a_client_that_walks_away_mid_stream_leaves_no_traceback(
    fake_upstream: FakeUpstream,
    client: openai.AsyncOpenAI,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A long answer, so the server is still writing (its socket buffers full) when the client goes.
    fake_upstream.set_reply("gpt-4o", "word " * 50_000)
    caplog.set_level(logging.DEBUG)
    capfd.readouterr()

    async def read_a_little(received: asyncio.Event) -> None:
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        ) as response:
            async for line in response.iter_lines():
                if line:
                    received.set()

    for _ in range(3):
        received = asyncio.Event()
        reading = asyncio.create_task(read_a_little(received))
        await asyncio.wait_for(received.wait(), 5)
        await asyncio.sleep(0.05)
        reading.cancel()  # the caller gives up mid-answer: the connection closes under the server
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    await asyncio.sleep(0.1)
    fake_upstream.stop()  # waits for every handler to end

    assert fake_upstream.count() == 3
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    assert capfd.readouterr().err == ""
