"""The fake upstream's Anthropic Messages wire, seen through the anthropic SDK."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any

import anthropic
import httpx2
import pytest

from router.testing import FakeUpstream, Fault

MODEL = "claude-haiku-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello, please."}]


async def create(client: anthropic.AsyncAnthropic, model: str = MODEL, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("max_tokens", 64)
    return await client.messages.create(model=model, **kwargs)


async def stream_events(
    client: anthropic.AsyncAnthropic, model: str = MODEL, **kwargs: Any
) -> tuple[list[tuple[float, Any]], Exception | None]:
    """The stream's events (`create(stream=True)`) with their arrival time, and the error that ended them."""
    started = time.monotonic()
    events: list[tuple[float, Any]] = []
    try:
        stream = await create(client, model, stream=True, **kwargs)
        async for event in stream:
            events.append((time.monotonic() - started, event))
    except Exception as exc:
        return events, exc
    return events, None


def types(events: list[tuple[float, Any]]) -> list[str]:
    return [event.type for _, event in events]


def text_of(events: list[tuple[float, Any]]) -> str:
    return "".join(
        event.delta.text
        for _, event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )


def post(upstream: FakeUpstream, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{upstream.anthropic_base_url}/v1/messages",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


# --- healthy answers -------------------------------------------------------------------------


async def test_message_has_the_anthropic_shape(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    message = await create(claude, system="Be brief.")

    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert [(block.type, block.text) for block in message.content] == [("text", f"Hello from {MODEL}.")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == len("Be brief." + "Say hello, please.") // 4 + 1
    assert message.usage.output_tokens == len(f"Hello from {MODEL}.") // 4 + 1
    record = fake_upstream.log[-1]
    assert (record.wire, record.path, record.model, record.stream) == (
        "anthropic",
        "/v1/messages",
        MODEL,
        False,
    )


async def test_stream_sends_the_events_in_order(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.set_reply(MODEL, "The quick brown fox.")

    events, error = await stream_events(claude)

    assert error is None
    assert types(events) == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0][1], events[-2][1]
    assert start.message.usage.input_tokens == len("Say hello, please.") // 4 + 1
    assert text_of(events) == "The quick brown fox."
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == len("The quick brown fox.") // 4 + 1


async def test_stream_helper_assembles_the_message(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    async with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    assert "".join(pieces) == message.content[0].text == f"Hello from {MODEL}."
    assert message.stop_reason == "end_turn"


async def test_the_raw_stream_has_a_ping(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    async with claude.messages.with_streaming_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
    ) as response:
        names = [
            line.removeprefix("event: ") async for line in response.iter_lines() if line.startswith("event:")
        ]

    assert names[:2] == ["message_start", "ping"]
    assert names[-1] == "message_stop"


async def test_models_list_in_anthropic_format(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.set_reply("claude-sonnet-4-6", "hi")
    await create(claude)

    page = await claude.models.list()

    assert [(m.type, m.id, m.display_name) for m in page.data] == [
        ("model", "claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("model", MODEL, MODEL),
    ]
    assert page.has_more is False
    assert (page.first_id, page.last_id) == ("claude-sonnet-4-6", MODEL)
    assert fake_upstream.log[-1].wire == "anthropic"


async def test_tool_call_answers(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.set_tool_call(MODEL, "get_weather", {"city": "Paris", "unit": "celsius"})
    tools: Any = [{"name": "get_weather", "description": "Weather.", "input_schema": {"type": "object"}}]

    message = await create(claude, tools=tools)
    events, error = await stream_events(claude, tools=tools)
    async with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES, tools=tools) as stream:
        assembled = await stream.get_final_message()

    (block,) = message.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", {"city": "Paris", "unit": "celsius"})
    assert message.stop_reason == "tool_use"
    assert error is None
    assert events[1][1].content_block.type == "tool_use"
    partials = [e.delta.partial_json for _, e in events if e.type == "content_block_delta"]
    assert len(partials) > 1 and json.loads("".join(partials)) == {"city": "Paris", "unit": "celsius"}
    assert events[-2][1].delta.stop_reason == "tool_use"
    assert assembled.content[0].input == {"city": "Paris", "unit": "celsius"}


# --- requests the API refuses ----------------------------------------------------------------


async def test_a_system_message_in_messages_is_refused(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(claude, messages=[{"role": "system", "content": "Be brief."}, *MESSAGES])

    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "top-level `system` parameter" in caught.value.message


def test_headers_and_fields_the_api_requires(fake_upstream: FakeUpstream) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": MESSAGES}

    without_version = post(fake_upstream, body, {})
    without_max_tokens = post(
        fake_upstream, {"model": MODEL, "messages": MESSAGES}, {"anthropic-version": "2023-06-01"}
    )
    fine = post(fake_upstream, body, {"anthropic-version": "2023-06-01"})

    assert without_version[0] == 400 and "anthropic-version" in without_version[1]["error"]["message"]
    assert without_max_tokens[0] == 400 and "max_tokens" in without_max_tokens[1]["error"]["message"]
    assert fine[0] == 200 and fine[1]["type"] == "message"
    assert [r.fault for r in fake_upstream.log] == ["invalid_request", "invalid_request", "ok"]


# --- error statuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "error_type"),
    [
        (Fault.rate_limited(), anthropic.RateLimitError, 429, "rate_limit_error"),
        (Fault.server_error(), anthropic.InternalServerError, 500, "api_error"),
        (Fault.overloaded(), anthropic.OverloadedError, 529, "overloaded_error"),
        (Fault.unavailable(), anthropic.ServiceUnavailableError, 503, "api_error"),
        (Fault.unauthorized(), anthropic.AuthenticationError, 401, "authentication_error"),
        (Fault.forbidden(), anthropic.PermissionDeniedError, 403, "permission_error"),
        (Fault.http(404), anthropic.NotFoundError, 404, "not_found_error"),
        (Fault.http(400, "max_tokens: too large"), anthropic.BadRequestError, 400, "invalid_request_error"),
    ],
    ids=lambda value: str(value) if isinstance(value, int) else None,
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_statuses_raise_the_matching_anthropic_error(
    fake_upstream: FakeUpstream,
    claude: anthropic.AsyncAnthropic,
    fault: Fault,
    error_class: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    stream: bool,
) -> None:
    fake_upstream.add_fault(MODEL, fault)

    with pytest.raises(error_class) as caught:
        await create(claude, stream=stream)

    assert caught.value.status_code == status
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type and body["error"]["message"]


async def test_retry_after_on_429(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.add_fault(MODEL, Fault.rate_limited(retry_after=3))

    with pytest.raises(anthropic.RateLimitError) as caught:
        await create(claude)

    assert caught.value.response.headers["retry-after"] == "3"


async def test_context_length_fault(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.add_fault(MODEL, Fault.context_length(200_000))

    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(claude)

    body: Any = caught.value.body
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 201000 tokens > 200000 maximum",
    }


async def test_content_filter_mentions_the_usage_policy(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.content_filter("violence"))

    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(claude)

    body: Any = caught.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert "Usage Policy" in body["error"]["message"] and "violence" in body["error"]["message"]


async def test_reject_prefill_only_rejects_a_trailing_assistant_message(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.reject_prefill())

    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(claude, messages=[*MESSAGES, {"role": "assistant", "content": "Sure:"}])
    message = await create(claude)

    assert "prefill" in caught.value.message
    assert message.stop_reason == "end_turn"


# --- errors inside the stream ----------------------------------------------------------------


async def test_overloaded_in_stream_is_an_in_band_error_event(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.overloaded_in_stream(3))

    events, error = await stream_events(claude)

    # The SDK drops the `ping` (the second event) and raises on `event: error`, status 200.
    assert types(events) == ["message_start", "content_block_start"]
    assert isinstance(error, anthropic.APIStatusError) and not isinstance(error, anthropic.OverloadedError)
    assert error.status_code == 200
    assert error.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert (fake_upstream.log[-1].fault, fake_upstream.log[-1].status) == ("overloaded_in_stream", 200)


async def test_stream_helper_raises_the_in_band_error_too(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.overloaded_in_stream(4))

    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            async for text in stream.text_stream:
                received.append(text)

    assert received == ["Hello"]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_a_bedrock_exception_in_stream_reads_as_its_anthropic_kin(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.exception_in_stream("throttlingException", 1))

    _, error = await stream_events(claude)

    assert isinstance(error, anthropic.APIStatusError)
    assert error.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


# --- broken streams --------------------------------------------------------------------------


async def test_cut_ends_the_stream_before_message_delta(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.cut(100))

    events, error = await stream_events(claude)

    assert types(events)[-1] == "content_block_stop"
    assert text_of(events) == f"Hello from {MODEL}."
    # The anthropic SDK does not wrap transport errors raised while a stream is read.
    assert isinstance(error, httpx2.RemoteProtocolError), repr(error)


async def test_stall_pauses_mid_stream_then_finishes(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.stall(3, 0.2))

    events, error = await stream_events(claude)

    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(events)]
    assert error is None
    assert gaps[1] >= 0.15 and max(gaps) == gaps[1]  # event 3 is the ping, which the SDK drops
    assert types(events)[-1] == "message_stop"


async def test_malformed_event_breaks_the_sdk_stream(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.malformed(3))

    events, error = await stream_events(claude)

    assert types(events) == ["message_start", "content_block_start"]
    assert isinstance(error, json.JSONDecodeError), repr(error)


async def test_no_done_leaves_out_message_stop(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.add_fault(MODEL, Fault.no_done())

    events, error = await stream_events(claude)

    assert error is None
    assert types(events)[-1] == "message_delta"
    assert events[-1][1].delta.stop_reason == "end_turn"


async def test_slow_first_token(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.add_fault(MODEL, Fault.slow_first_token(0.2))

    events, error = await stream_events(claude)

    assert error is None and events[0][0] >= 0.2


# --- connection faults and odd answers -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_reset_is_a_connection_error(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic, stream: bool
) -> None:
    fake_upstream.add_fault(MODEL, Fault.reset())

    with pytest.raises(anthropic.APIConnectionError) as caught:
        await create(claude, stream=stream)

    assert not isinstance(caught.value, anthropic.APITimeoutError)


async def test_hang_times_out(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.add_fault(MODEL, Fault.hang(), times=1)

    with pytest.raises(anthropic.APITimeoutError):
        await create(claude, timeout=0.2)

    assert (await create(claude)).stop_reason == "end_turn"


async def test_empty_and_truncated_answers(
    fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake_upstream.set_reply(MODEL, "one two three four")
    fake_upstream.add_fault(MODEL, Fault.empty_choices(), times=2)
    fake_upstream.add_fault(MODEL, Fault.truncated())

    empty = await create(claude)
    empty_events, _ = await stream_events(claude)
    truncated = await create(claude)
    truncated_events, _ = await stream_events(claude)

    assert empty.content == []
    assert types(empty_events) == ["message_start", "message_delta", "message_stop"]
    assert truncated.content[0].text == "one two" and truncated.stop_reason == "max_tokens"
    assert text_of(truncated_events) == "one two"
    assert truncated_events[-2][1].delta.stop_reason == "max_tokens"


async def test_html_and_invalid_json(fake_upstream: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake_upstream.add_fault(MODEL, Fault.html(), times=1)
    fake_upstream.add_fault(MODEL, Fault.invalid_json(), times=1)

    html = await claude.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    with pytest.raises(ValueError):
        await create(claude)

    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert [r.fault for r in fake_upstream.log] == ["html", "invalid_json"]
