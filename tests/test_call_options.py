"""What a call may pass (issue 11): documented parameters, a checked set of provider options and one
pass-through mapping; a name the router owns raises `TypeError` naming what does it, before any call,
so that a caller's mistake never moves a breaker."""

from __future__ import annotations

from typing import Any

import pytest

from router import Router, parse_policy
from router.policy.model import ProviderSpec
from router.providers.anthropic import AnthropicProvider
from router.providers.base import Call
from router.providers.bedrock import converse_request
from router.providers.openai import OpenAIProvider
from router.resilience.breaker import BreakerState
from router.testing.scripted import ScriptedProvider

USER = [{"role": "user", "content": "hi"}]
POLICY = """\
providers:
  p1: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", breaker: {fail_max: 1}}
targets:
  a: {provider: p1, model: a, capabilities: {tools: true}}
routes:
  chat: {targets: [a]}
"""


@pytest.fixture
async def router() -> Any:
    provider = ScriptedProvider("p1")
    router = Router(parse_policy(POLICY, env={}), providers={"p1": provider})
    yield router
    await router.aclose()


def untouched(router: Router) -> bool:
    provider = router._providers["p1"]
    assert isinstance(provider, ScriptedProvider)
    return not provider.calls and router._runtimes["a"].breaker.state == BreakerState.CLOSED


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ({"model": "gpt-4o-mini"}, "'provider:model'"),
        ({"stream": True}, "router.stream()"),
        ({"stream_options": {"include_usage": True}}, "usage of a stream itself"),
        ({"timeout": 5}, "use deadline="),
        ({"fallbacks": ["b"]}, "routes.<route>.targets"),
        ({"n": 2}, "one answer per call"),
        ({"max_retries": 3}, "routes.<route>.retry"),
        ({"max_completion_tokens": 10}, "use max_tokens="),
        ({"api_key": "sk-x"}, "providers.<name>.api_key"),
        ({"base_url": "http://evil"}, "providers.<name>.base_url"),
        ({"extra_headers": {"x": "y"}}, "providers.<name>.headers"),
    ],
)
async def test_a_name_the_router_owns_is_a_type_error_naming_what_does_it(
    router: Router, option: dict[str, Any], hint: str
) -> None:
    [name] = option
    with pytest.raises(
        TypeError, match=rf"complete\(\) got an unexpected keyword argument '{name}': .*"
    ) as caught:
        await router.complete("chat", USER, **option)
    assert hint in str(caught.value)
    with pytest.raises(TypeError, match=rf"stream\(\) got an unexpected keyword argument '{name}'"):
        router.stream("chat", USER, **option)  # at the call, not at the first item
    assert untouched(router)


async def test_an_unknown_option_suggests_the_near_one_and_extra_body(router: Router) -> None:
    with pytest.raises(TypeError) as caught:
        await router.complete("chat", USER, tool_choise="auto")
    message = str(caught.value)
    assert "did you mean 'tool_choice'?" in message
    assert "extra_body={'tool_choise': ...}" in message
    assert untouched(router)


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"max_tokens": True}, TypeError, "max_tokens must be a whole number"),
        ({"max_tokens": "lots"}, TypeError, "max_tokens must be a whole number"),
        ({"max_tokens": 0}, ValueError, "max_tokens must be at least 1"),
        ({"temperature": float("nan")}, TypeError, "temperature must be a finite number"),
        ({"deadline": 0}, ValueError, "deadline must be a number of seconds above 0"),
        ({"deadline": float("inf")}, ValueError, "deadline must be"),
        ({"metadata": ["tenant"]}, TypeError, "metadata must be a mapping"),
        ({"tools": [object()]}, TypeError, "tools: not a JSON value"),
        ({"stop": float("nan")}, TypeError, "stop: not a JSON value"),
        ({"extra_body": ["x"]}, TypeError, "extra_body must be a mapping"),
        ({"extra_body": {"model": "other"}}, TypeError, "extra_body may not set 'model'"),
        ({"extra_body": {"messages": []}}, TypeError, "extra_body may not set 'messages'"),
        ({"extra_body": {"max_tokens": 5}}, TypeError, "extra_body may not set 'max_tokens'"),
    ],
)
async def test_a_bad_argument_fails_before_any_call(
    router: Router, arguments: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        await router.complete("chat", USER, **arguments)
    assert untouched(router)


@pytest.mark.parametrize("messages", ["hi", [{"content": "no role"}], ["hi"]])
async def test_messages_of_the_wrong_shape_fail_before_any_call(router: Router, messages: Any) -> None:
    with pytest.raises(TypeError, match="messages"):
        await router.complete("chat", messages)
    assert untouched(router)


async def test_provider_options_and_the_pass_through_reach_the_provider(router: Router) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await router.complete(
        "chat", USER, max_tokens=5, stop=["END"], tools=tools, seed=7, extra_body={"top_k": 40}
    )
    provider = router._providers["p1"]
    assert isinstance(provider, ScriptedProvider)
    [call] = provider.calls
    assert (call.model, call.max_tokens) == ("a", 5)
    assert call.options == {"stop": ["END"], "tools": tools, "seed": 7, "extra_body": {"top_k": 40}}


def test_every_wire_sends_the_pass_through_as_given() -> None:
    call = Call("m", USER, 5.0, 10, None, {"seed": 1, "extra_body": {"top_k": 40, "safe_mode": True}})
    openai = OpenAIProvider("o", ProviderSpec(type="openai_compatible", base_url="http://127.0.0.1:9"), "k")
    sent = openai._params(call)
    assert sent["model"] == "m"
    assert {key: sent["extra_body"][key] for key in ("top_k", "safe_mode", "seed")} == {
        "top_k": 40,
        "safe_mode": True,
        "seed": 1,
    }
    anthropic = AnthropicProvider("c", ProviderSpec(type="anthropic", base_url="http://127.0.0.1:9"), "k")
    assert anthropic._params(call)["extra_body"] == {"top_k": 40, "safe_mode": True}
    assert converse_request(call)["additionalModelRequestFields"] == {"top_k": 40, "safe_mode": True}
