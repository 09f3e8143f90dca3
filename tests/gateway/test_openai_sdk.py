"""The real OpenAI SDK against the gateway: sync, async, streaming, tools, errors as the SDK raises them."""

from __future__ import annotations

import json

import openai
import pytest

from router.testing import FakeUpstream, Fault

from .conftest import TEAM_KEY, GatewayServer

HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def client(server: GatewayServer, key: str = TEAM_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def aclient(server: GatewayServer, key: str = TEAM_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_sync_completion_names_the_target_in_headers(server: GatewayServer, upstream: FakeUpstream):
    raw = client(server).chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from gpt-a."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-router-target"] == "primary"
    assert raw.headers["x-router-attempts"] == "1"
    assert float(raw.headers["x-router-cost-usd"]) > 0


def test_failover_is_invisible_but_counted(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.server_error(), times=1)
    raw = client(server).chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from gpt-b."
    assert (raw.headers["x-router-target"], raw.headers["x-router-attempts"]) == ("backup", "2")


async def test_async_completion_and_the_trail_on_request(server: GatewayServer, upstream: FakeUpstream):
    upstream.add_fault("gpt-a", Fault.rate_limited(), times=1)
    async with aclient(server) as api:
        completion = await api.chat.completions.create(
            model="chat", messages=HELLO, extra_body={"router": {"trail": True}}
        )
    trail = completion.model_extra["router"]  # type: ignore[index]
    assert trail["target"] == "backup"
    assert [a["outcome"] for a in trail["attempts"]] == ["rate_limited", "ok"]


def test_sync_stream_is_openai_chunks_with_usage(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_reply("gpt-a", "one two three")
    chunks = list(
        client(server).chat.completions.create(
            model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    )


async def test_async_stream_with_tools(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_tool_call("gpt-a", "weather", {"city": "Paris"})
    async with aclient(server) as api:
        stream = await api.chat.completions.create(model="chat", messages=HELLO, tools=[WEATHER], stream=True)
        chunks = [chunk async for chunk in stream]
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [  # type: ignore[union-attr]
        ("weather", {"city": "Paris"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_round_trip(server: GatewayServer, upstream: FakeUpstream):
    upstream.set_tool_call("gpt-a", "weather", {"city": "Oslo"})
    api = client(server)
    first = api.chat.completions.create(model="chat", messages=HELLO, tools=[WEATHER], tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"  # type: ignore[union-attr]
    upstream.set_reply("gpt-a", "Sunny.")
    messages = [*HELLO, first.choices[0].message.model_dump(exclude_none=True)]
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = api.chat.completions.create(model="chat", messages=messages, tools=[WEATHER])  # type: ignore[arg-type]
    assert second.choices[0].message.content == "Sunny."
    assert [record.fault for record in upstream.log] == ["ok", "ok"]


def test_a_claude_target_behind_the_openai_wire(server: GatewayServer, upstream: FakeUpstream):
    completion = client(server).chat.completions.create(model="claude", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from claude-x."


def test_provider_model_address(server: GatewayServer, upstream: FakeUpstream):
    completion = client(server).chat.completions.create(model="up:gpt-z", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from gpt-z."


def test_models_lists_routes_aliases_and_targets(server: GatewayServer):
    names = {model.id for model in client(server).models.list()}
    assert {"chat", "solo", "claude", "fast", "up:gpt-a"} <= names


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        (Fault.rate_limited(), 429, openai.RateLimitError),
        (Fault.server_error(), 502, openai.InternalServerError),
        (Fault.context_length(), 400, openai.BadRequestError),
    ],
)
def test_errors_reach_the_sdk_as_its_own(server, upstream, fault, status, error):
    upstream.add_fault("gpt-a", fault)
    with pytest.raises(error) as caught:
        client(server).chat.completions.create(model="solo", messages=HELLO)
    assert caught.value.status_code == status
    assert caught.value.response.headers["x-router-error-kind"]


def test_an_unknown_key_is_an_authentication_error(server: GatewayServer):
    with pytest.raises(openai.AuthenticationError):
        client(server, key="not-a-key-of-this-gateway").chat.completions.create(model="chat", messages=HELLO)
