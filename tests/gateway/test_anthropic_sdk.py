"""The real Anthropic SDK against the gateway: any provider behind a route answers on Anthropic's wire."""

from __future__ import annotations

import anthropic
import pytest

from router.testing import FakeUpstream, Fault

from .conftest import TEAM_KEY, GatewayServer

HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {
    "name": "weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def client(server: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=TEAM_KEY, max_retries=0)


def aclient(server: GatewayServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key=TEAM_KEY, max_retries=0)


def test_an_openai_target_answers_an_anthropic_client(server: GatewayServer):
    raw = client(server).messages.with_raw_response.create(
        model="chat", max_tokens=100, system="Be brief.", messages=HELLO
    )
    message = raw.parse()
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello from gpt-a."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert raw.headers["x-router-target"] == "primary"


async def test_async_stream_events(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_reply("claude-x", "one two three")
    api = aclient(server)
    async with api, api.messages.stream(model="claude", max_tokens=100, messages=HELLO) as stream:
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert message.content[0].text == "one two three"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"


def test_tools_and_tool_results_round_trip(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_tool_call("gpt-a", "weather", {"city": "Lima"})
    api = client(server)
    first = api.messages.create(model="chat", max_tokens=100, messages=HELLO, tools=[WEATHER])  # type: ignore[list-item]
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert (use.name, use.input) == ("weather", {"city": "Lima"})  # type: ignore[union-attr]
    upstream.set_reply("gpt-a", "Warm.")
    second = api.messages.create(
        model="chat",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "auto"},
        messages=[
            *HELLO,
            {"role": "assistant", "content": [use.model_dump()]},  # type: ignore[list-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "warm"}]},  # type: ignore[union-attr]
        ],
    )
    assert second.content[0].text == "Warm."  # type: ignore[union-attr]


def test_a_streamed_tool_use(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_tool_call("claude-x", "weather", {"city": "Rome"})
    with client(server).messages.stream(
        model="claude", max_tokens=100, messages=HELLO, tools=[WEATHER]
    ) as stream:  # type: ignore[list-item]
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [("tool_use", {"city": "Rome"})]


def test_images_reach_the_target(server: GatewayServer):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    message = client(server).messages.create(
        model="claude",
        max_tokens=100,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}],  # type: ignore[list-item]
    )
    assert message.content[0].text == "Hello from claude-x."  # type: ignore[union-attr]


def test_errors_are_anthropic_errors(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.rate_limited())
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(server).messages.create(model="solo", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client(server).messages.create(model="no-such-route", max_tokens=10, messages=HELLO)
