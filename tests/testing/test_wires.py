"""What the wires share: one upstream, one set of rules and one log for targets of every provider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import botocore.eventstream
import openai
import pytest

from router.testing import FakeUpstream, Fault
from router.testing.wires import AnthropicWire, AzureWire, BedrockWire, GoogleWire, OpenAIWire
from router.testing.wires.eventstream import encode_frame

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello, please."}]
CONVERSE_MESSAGES = [{"role": "user", "content": [{"text": "Say hello, please."}]}]


@pytest.fixture
async def client(fake_upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake_upstream.base_url, api_key="test", max_retries=0, timeout=2.0)
    yield client
    await client.close()


async def call_every_wire(
    model: str,
    client: openai.AsyncOpenAI,
    azure: openai.AsyncAzureOpenAI,
    claude: anthropic.AsyncAnthropic,
    bedrock: Any,
) -> list[str]:
    """The outcome of one request on each wire: "ok" or the error's status."""
    calls = [
        lambda: client.chat.completions.create(model=model, messages=MESSAGES),
        lambda: azure.chat.completions.create(model=model, messages=MESSAGES),
        lambda: claude.messages.create(model=model, max_tokens=8, messages=MESSAGES),
    ]
    outcomes = []
    for call in calls:
        try:
            await call()
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            outcomes.append(str(exc.status_code))
        else:
            outcomes.append("ok")
    try:
        bedrock.converse(modelId=model, messages=CONVERSE_MESSAGES)
    except bedrock.exceptions.ClientError as exc:
        outcomes.append(str(exc.response["ResponseMetadata"]["HTTPStatusCode"]))
    else:
        outcomes.append("ok")
    return outcomes


async def test_one_upstream_serves_four_providers_under_one_set_of_rules(
    fake_upstream: FakeUpstream,
    client: openai.AsyncOpenAI,
    azure: openai.AsyncAzureOpenAI,
    claude: anthropic.AsyncAnthropic,
    bedrock: Any,
) -> None:
    fake_upstream.add_fault("shared", Fault.unavailable(), after=1, times=2)

    outcomes = await call_every_wire("shared", client, azure, claude, bedrock)

    assert outcomes == ["ok", "503", "503", "ok"]
    assert [(r.wire, r.fault, r.status) for r in fake_upstream.log] == [
        ("openai", "ok", 200),
        ("azure", "http_503", 503),
        ("anthropic", "http_503", 503),
        ("bedrock", "ok", 200),
    ]
    assert fake_upstream.count("shared") == 4


async def test_count_and_log_cover_every_wire(
    fake_upstream: FakeUpstream,
    client: openai.AsyncOpenAI,
    azure: openai.AsyncAzureOpenAI,
    claude: anthropic.AsyncAnthropic,
    bedrock: Any,
) -> None:
    await call_every_wire("a", client, azure, claude, bedrock)
    await client.models.list()
    await claude.models.list()

    assert fake_upstream.count() == 4 and fake_upstream.count("a") == 4
    assert [(r.method, r.wire) for r in fake_upstream.log[-2:]] == [("GET", "openai"), ("GET", "anthropic")]
    assert {r.path for r in fake_upstream.log[-2:]} == {"/v1/models"}


def test_urls() -> None:
    with FakeUpstream() as upstream:
        root = f"http://127.0.0.1:{upstream.port}"
        assert (upstream.azure_endpoint, upstream.anthropic_base_url, upstream.bedrock_url) == (root,) * 3
        assert upstream.base_url == f"{root}/v1"


# --- tool calls on the OpenAI wire -----------------------------------------------------------


async def test_openai_tool_call_answers(fake_upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    fake_upstream.set_tool_call("gpt-4o", "get_weather", {"city": "Paris", "unit": "celsius"})

    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    message = completion.choices[0].message
    assert message.content is None and completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert len(deltas) > 2
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_set_reply_takes_back_a_tool_call(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.set_tool_call("gpt-4o", "f", {})
    fake_upstream.set_reply("gpt-4o", "plain")

    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert completion.choices[0].message.content == "plain" and not completion.choices[0].message.tool_calls


async def test_in_stream_errors_on_the_openai_wire(
    fake_upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    fake_upstream.add_fault("gpt-4o", Fault.overloaded_in_stream(2))

    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        ):
            received.append(chunk)

    assert len(received) == 2
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.body["type"] == "server_error"  # type: ignore[index]


# --- the pieces ------------------------------------------------------------------------------


def test_eventstream_frames_decode_with_botocore() -> None:
    frames = encode_frame({":event-type": "messageStart", ":message-type": "event"}, b'{"role": "assistant"}')
    frames += encode_frame({":exception-type": "throttlingException"}, b"")

    buffer = botocore.eventstream.EventStreamBuffer()
    buffer.add_data(frames)
    first, second = list(buffer)

    assert first.headers == {":event-type": "messageStart", ":message-type": "event"}
    assert first.payload == b'{"role": "assistant"}'
    assert (second.headers, second.payload) == ({":exception-type": "throttlingException"}, b"")


def test_every_wire_has_a_name_and_paths() -> None:
    wires = [OpenAIWire(), AzureWire(), AnthropicWire(), BedrockWire(), GoogleWire()]

    assert [w.name for w in wires] == ["openai", "azure", "anthropic", "bedrock", "google"]
    assert all(w.chat_paths and w.models_path for w in wires)
