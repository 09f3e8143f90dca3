"""The Anthropic adapter: request translation (pure), then the real anthropic SDK against the
loopback fake upstream's Messages wire, under every fault, through `router.Router`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from router import AllTargetsFailed, ErrorKind, Policy, ProviderError, Router, StreamBroken
from router.policy.model import ProviderSpec
from router.providers._translate import (
    Image,
    Text,
    ToolChoice,
    ToolResult,
    ToolUse,
    Turn,
    parse_data_url,
    read_conversation,
    read_stop,
    read_tool_choice,
    read_tools,
)
from router.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from router.providers.base import Call
from router.results import Completion
from router.testing import FakeUpstream, Fault

SECRET = "anthropic-test-secret-0123456789abcdef"
USER = [{"role": "user", "content": "Tell me something."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# -- translation, without a server ---------------------------------------------------------


def params(messages: list[dict[str, Any]], headers: dict[str, str] | None = None, **options: Any) -> Any:
    spec = ProviderSpec(type="anthropic", base_url="http://127.0.0.1:9", headers=headers or {})
    provider = AnthropicProvider("claude", spec, SECRET)
    max_tokens = options.pop("max_tokens", None)
    temperature = options.pop("temperature", None)
    return provider._params(Call("claude-test", messages, 5.0, max_tokens, temperature, options))


def test_system_messages_are_hoisted_and_joined():
    conversation = read_conversation(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            *USER,
        ]
    )
    assert conversation.system == ("Be brief.", "Answer in French.")
    assert conversation.turns == (Turn("user", (Text("Tell me something."),)),)
    sent = params(
        [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Be kind."}, *USER]
    )
    assert sent["system"] == "Be brief.\n\nBe kind."
    assert all(message["role"] != "system" for message in sent["messages"])


def test_same_role_neighbours_merge_and_empty_messages_vanish():
    conversation = read_conversation(
        [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "three"},
            {"role": "assistant", "content": "four"},
        ]
    )
    assert conversation.turns == (
        Turn("user", (Text("one"), Text("two"), Text("three"))),
        Turn("assistant", (Text("four"),)),
    )
    assert conversation.ends_with_assistant


def test_tool_calls_and_results_become_tool_use_and_one_user_turn_of_results():
    conversation = read_conversation(
        [
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": "Thanks; and now?"},
        ]
    )
    assert conversation.turns[1] == Turn("assistant", (ToolUse("c1", "f", {"a": 1}), ToolUse("c2", "g", {})))
    assert conversation.turns[2] == Turn(
        "user", (ToolResult("c1", "42"), ToolResult("c2", "ok"), Text("Thanks; and now?"))
    )
    sent = params(
        [
            *USER,
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    )
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "42"}]},
    ]


def test_tool_results_come_first_in_a_user_turn():
    turns = read_conversation(
        [
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f"}}]},
            {"role": "user", "content": "By the way..."},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    ).turns
    assert turns[1].blocks == (ToolResult("c1", "done"), Text("By the way..."))


def test_tools_and_tool_choice():
    assert read_tools([WEATHER_TOOL])[0].name == "get_weather"
    assert read_tools([{"type": "function", "function": {"name": "noop"}}])[0].parameters == {
        "type": "object",
        "properties": {},
    }
    assert read_tool_choice("auto") == ToolChoice("auto")
    assert read_tool_choice("required") == ToolChoice("any")
    assert read_tool_choice("none") == ToolChoice("none")
    assert read_tool_choice({"type": "function", "function": {"name": "f"}}) == ToolChoice("tool", "f")
    sent = params(
        USER, tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert params(USER, tools=[WEATHER_TOOL], tool_choice="required")["tool_choice"] == {"type": "any"}
    assert params(USER, tools=[WEATHER_TOOL], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert "tool_choice" not in params(USER, tool_choice="auto")  # the wire refuses a choice without tools


def test_stop_max_tokens_and_response_format():
    assert read_stop("END") == ["END"] and read_stop(["a", "", "b"]) == ["a", "b"] and read_stop(None) == []
    sent = params(USER, stop=["END"])
    assert sent["stop_sequences"] == ["END"] and sent["max_tokens"] == DEFAULT_MAX_TOKENS
    assert params(USER, max_tokens=50)["max_tokens"] == 50
    assert params(USER, max_completion_tokens=70)["max_tokens"] == 70
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    structured = params(
        USER, response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    )
    assert structured["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in params(USER, response_format={"type": "json_object"})


def test_openai_only_options_are_dropped_and_sampling_needs_an_old_api_version():
    sent = params(
        USER, temperature=0.2, top_p=0.9, seed=7, frequency_penalty=1.0, logprobs=True, n=1, user="u-1"
    )
    assert sent["metadata"] == {"user_id": "u-1"}
    assert not {"temperature", "top_p", "seed", "frequency_penalty", "logprobs", "n", "extra_body"} & set(
        sent
    )
    pinned = params(USER, headers={"anthropic-version": "2023-06-01"}, temperature=0.2, top_p=0.9)
    assert pinned["extra_body"] == {"temperature": 0.2, "top_p": 0.9}


def test_prefill_loses_its_trailing_whitespace():
    sent = params([*USER, {"role": "assistant", "content": "Well, "}])
    assert sent["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "Well,"}]}
    blank = params([*USER, {"role": "assistant", "content": "  "}])
    assert [m["role"] for m in blank["messages"]] == ["user"]


def test_images_inline_and_by_url():
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("https://example.com/a.png") is None
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    assert read_conversation([{"role": "user", "content": content}]).turns[0].blocks[1:] == (
        Image("data:image/jpeg;base64,/9j/4A=="),
        Image("https://example.com/cat.png"),
    )
    sent = params([{"role": "user", "content": content}])["messages"][0]["content"]
    assert sent[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4A=="},
    }
    assert sent[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


def test_answers_refusals_and_cached_usage_are_read():
    provider = AnthropicProvider(
        "claude", ProviderSpec(type="anthropic", base_url="http://127.0.0.1:9"), SECRET
    )
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 90,
        "cache_creation_input_tokens": 5,
        "output_tokens": 7,
    }
    body = {
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "It is "},
            {"type": "text", "text": "sunny."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1]}},
        ],
        "stop_reason": "tool_use",
        "usage": usage,
    }
    reply = provider._parse_reply(json.dumps(body).encode())
    assert (reply.text, reply.finish_reason) == ("It is sunny.", "tool_calls")
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (105, 7)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("toolu_1", "f", {"a": [1]})
    ]
    with pytest.raises(ProviderError) as refused:
        provider._parse_reply(json.dumps(body | {"stop_reason": "refusal"}).encode())
    assert refused.value.kind is ErrorKind.CONTENT_FILTER
    for stop_reason, finish in [
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("pause_turn", "pause_turn"),
    ]:
        assert (
            provider._parse_reply(json.dumps(body | {"stop_reason": stop_reason}).encode()).finish_reason
            == finish
        )


@pytest.mark.parametrize(
    ("messages", "options", "complaint"),
    [
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], {}, "input_audio"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x.png"}}]}],
            {},
            "image",
        ),
        ([{"role": "function", "name": "f", "content": "x"}], {}, "role 'function'"),
        (
            [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
                },
            ],
            {},
            "not valid JSON",
        ),
        ([{"role": "tool", "content": "orphan"}], {}, "tool_call_id"),
        (USER, {"tools": [{"type": "web_search"}]}, "only function tools"),
        (USER, {"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        (USER, {"stop": 3}, "stop"),
    ],
)
def test_untranslatable_requests_are_bad_requests(messages, options, complaint):
    with pytest.raises(ProviderError) as caught:
        params(messages, **options)
    assert caught.value.kind is ErrorKind.BAD_REQUEST and complaint in caught.value.message


# -- the real SDK against the fake upstream's Messages wire ----------------------------------


def make_router(upstream: FakeUpstream, route: dict[str, Any] | None = None, **targets: Any) -> Router:
    provider = {
        "type": "anthropic",
        "base_url": upstream.anthropic_base_url,
        "api_key": SECRET,
        "breaker": {"fail_max": 100},
    }
    policy = Policy.model_validate(
        {
            "providers": {"claude": provider},
            "targets": targets
            or {
                "primary": {
                    "provider": "claude",
                    "model": "claude-primary",
                    "price": {"input": 3.0, "output": 15.0},
                    "capabilities": {"tools": True},
                },
                "secondary": {
                    "provider": "claude",
                    "model": "claude-secondary",
                    "capabilities": {"tools": True},
                },
            },
            "routes": {
                "chat": {
                    "targets": list(targets) or ["primary", "secondary"],
                    "retry": {"backoff_base": "10ms", "backoff_max": "1s"},
                    **(route or {}),
                }
            },
        }
    )
    return Router(policy, seed=3)


def direct(upstream: FakeUpstream) -> AnthropicProvider:
    spec = ProviderSpec(type="anthropic", base_url=upstream.anthropic_base_url)
    return AnthropicProvider("claude", spec, SECRET)


def trail(result: Any) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def stream_all(
    router: Router, messages: list[dict[str, Any]] = USER, **options: Any
) -> tuple[str, Completion]:
    text, final = "", None
    async for item in router.stream("chat", messages, **options):
        if isinstance(item, Completion):
            final = item
        else:
            text += item
    assert final is not None
    return text, final


async def test_answer_usage_cost_and_system_prompt(fake_upstream):
    fake_upstream.set_reply("claude-primary", "Hello from Claude.")
    messages = [{"role": "system", "content": "Be brief."}, *USER]  # the wire refuses a system role
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", messages)  # and max_tokens: the default goes out
    assert (result.text, result.finish_reason, result.target) == ("Hello from Claude.", "stop", "primary")
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.cost_usd == pytest.approx(
        result.usage.input_tokens * 3e-6 + result.usage.output_tokens * 15e-6
    )
    assert [(r.wire, r.path, r.fault) for r in fake_upstream.log] == [("anthropic", "/v1/messages", "ok")]


async def test_stream_text_finish_and_usage(fake_upstream):
    fake_upstream.set_reply("claude-primary", "one two three four")
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router, [{"role": "system", "content": "Be brief."}, *USER])
    assert text == final.text == "one two three four" and final.finish_reason == "stop"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0 and not final.warnings


async def test_429_retry_after_is_honoured(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.rate_limited(retry_after=0.2), times=1)
    async with make_router(fake_upstream) as router:
        started = time.monotonic()
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "rate_limited"), ("primary", "ok")]
    assert time.monotonic() - started >= 0.2 and result.attempts[0].status == 429


async def test_429_without_retry_after_backs_off_then_fails_over(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.rate_limited())
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "rate_limited"), ("primary", "rate_limited"), ("secondary", "ok")]


async def test_500_once_is_retried(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.server_error(), times=1)
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "server_error"), ("primary", "ok")]
    assert result.attempts[0].status == 500 and "api_error" in (result.attempts[0].error or "")


@pytest.mark.parametrize(("fault", "status"), [(Fault.unavailable(), 503), (Fault.overloaded(), 529)])
async def test_unavailable_and_overloaded_are_server_errors_that_fail_over(fake_upstream, fault, status):
    fake_upstream.add_fault("claude-primary", fault)
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "server_error"), ("primary", "server_error"), ("secondary", "ok")]
    assert [a.status for a in result.attempts] == [status, status, None]


async def test_overloaded_in_stream_before_output_is_retried(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.overloaded_in_stream(2), times=1)
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", "server_error"), ("primary", "ok")] and text == final.text
    assert final.attempts[0].status is None  # classified by its error type, not by the 200 it came in
    assert "overloaded_error" in (final.attempts[0].error or "")


async def test_overloaded_in_stream_after_output_is_never_a_success(fake_upstream):
    fake_upstream.set_reply("claude-primary", "one two three four five six")
    fake_upstream.add_fault("claude-primary", Fault.overloaded_in_stream(5))
    async with make_router(fake_upstream, {"stream_recovery": "raise"}) as router:
        with pytest.raises(StreamBroken, match=r"server_error.*overloaded_error") as caught:
            await stream_all(router)
    assert caught.value.received and caught.value.received != "one two three four five six"


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        ("throttlingException", ErrorKind.RATE_LIMITED),  # rate_limit_error
        ("serviceUnavailableException", ErrorKind.SERVER_ERROR),  # overloaded_error
        ("internalServerException", ErrorKind.SERVER_ERROR),  # api_error
        ("validationException", ErrorKind.BAD_REQUEST),  # invalid_request_error
    ],
)
async def test_in_band_errors_are_classified_by_their_type(fake_upstream, exception, kind):
    fake_upstream.add_fault("claude-primary", Fault.exception_in_stream(exception, 2))
    provider = direct(fake_upstream)
    try:
        with pytest.raises(ProviderError) as caught:
            async for _ in provider.stream(Call("claude-primary", USER, 5.0)):
                pass
    finally:
        await provider.aclose()
    assert caught.value.kind is kind and caught.value.status is None


async def test_tcp_reset_is_a_connection_error(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.reset())
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "connection"), ("primary", "connection"), ("secondary", "ok")]


async def test_no_response_times_out_and_fails_over(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.hang())
    async with make_router(fake_upstream, {"latency_budget": {"per_attempt": "200ms"}}) as router:
        started = time.monotonic()
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "timeout"), ("secondary", "ok")]
    assert 0.2 <= time.monotonic() - started < 1.0


async def test_slow_first_token_fails_over_while_it_is_free(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.slow_first_token(2.0))
    async with make_router(fake_upstream, {"latency_budget": {"first_token": "200ms"}}) as router:
        text, final = await stream_all(router)
    assert final.target == "secondary" and trail(final)[0] == ("primary", "timeout") and text


async def test_stream_cut_raises_with_the_partial_text(fake_upstream):
    fake_upstream.set_reply("claude-primary", "one two three four five six")
    fake_upstream.add_fault("claude-primary", Fault.cut(5))  # start, ping, block start, two words
    async with make_router(fake_upstream, {"stream_recovery": "raise"}) as router:
        with pytest.raises(StreamBroken) as caught:
            await stream_all(router)
    assert caught.value.received == "one two"


async def test_complete_restarts_a_cut_stream_elsewhere(fake_upstream):
    fake_upstream.set_reply("claude-secondary", "The whole answer.")
    fake_upstream.add_fault("claude-primary", Fault.cut(5))
    async with make_router(fake_upstream, {"latency_budget": {"idle": "1s"}}) as router:
        result = await router.complete("chat", USER)
    assert result.text == "The whole answer."
    assert trail(result) == [("primary", "stream_broken"), ("secondary", "ok")]


async def test_stream_stall_after_output_raises(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.stall(4, 5.0))  # after the first word
    async with make_router(
        fake_upstream, {"stream_recovery": "raise", "latency_budget": {"idle": "200ms"}}
    ) as router:
        with pytest.raises(StreamBroken, match="stalled") as caught:
            await stream_all(router)
    assert caught.value.received


async def test_stream_stall_before_output_fails_over(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.stall(3, 5.0))  # after the block start only
    async with make_router(fake_upstream, {"latency_budget": {"idle": "200ms"}}) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", "timeout"), ("secondary", "ok")] and text


async def test_malformed_event_is_skipped_and_noted(fake_upstream):
    fake_upstream.set_reply("claude-primary", "alpha beta gamma delta")
    fake_upstream.add_fault("claude-primary", Fault.malformed(4))
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert text == "alpha beta gamma delta" and final.target == "primary"
    assert any("malformed" in warning for warning in final.warnings)


async def test_stream_without_message_stop_is_whole_when_it_said_why_it_stopped(fake_upstream):
    fake_upstream.set_reply("claude-primary", "finished properly")
    fake_upstream.add_fault("claude-primary", Fault.no_done())
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert text == "finished properly" and final.finish_reason == "stop" and final.usage.output_tokens > 0


@pytest.mark.parametrize("streaming", [False, True])
async def test_truncated_answer_finishes_for_length(fake_upstream, streaming):
    fake_upstream.set_reply("claude-primary", "one two three four")
    fake_upstream.add_fault("claude-primary", Fault.truncated())
    async with make_router(fake_upstream) as router:
        result = (await stream_all(router))[1] if streaming else await router.complete("chat", USER)
    assert (result.text, result.finish_reason) == ("one two", "length")


async def test_context_length_fails_over_to_a_larger_window(fake_upstream):
    fake_upstream.add_fault("claude-small", Fault.context_length(8000))
    router = make_router(
        fake_upstream,
        small={"provider": "claude", "model": "claude-small", "context_window": 8000},
        large={"provider": "claude", "model": "claude-large", "context_window": 200000},
    )
    async with router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("small", "context_length"), ("large", "ok")]


async def test_content_filter_reason_reaches_the_caller(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.content_filter("violence"))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as caught:
            await router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.CONTENT_FILTER and "violence" in str(caught.value)
    assert fake_upstream.count("claude-secondary") == 0


async def test_prefill_goes_only_to_a_target_that_takes_it_and_is_continued(fake_upstream):
    fake_upstream.add_fault("claude-strict", Fault.reject_prefill())
    fake_upstream.set_reply("claude-lenient", "it depends.")
    router = make_router(
        fake_upstream,
        strict={"provider": "claude", "model": "claude-strict", "capabilities": {"prefill": False}},
        lenient={"provider": "claude", "model": "claude-lenient", "capabilities": {"prefill": True}},
    )
    async with router:
        result = await router.complete("chat", [*USER, {"role": "assistant", "content": "Well, "}])
    assert (result.target, result.text) == ("lenient", "it depends.")
    assert fake_upstream.count("claude-strict") == 0


async def test_a_target_that_rejects_prefill_says_so_as_a_bad_request(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.reject_prefill())
    provider = direct(fake_upstream)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(
                Call("claude-primary", [*USER, {"role": "assistant", "content": "Well,"}], 5.0)
            )
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.BAD_REQUEST and "prefill" in caught.value.message


@pytest.mark.parametrize("garbage", [Fault.html(), Fault.invalid_json()])
@pytest.mark.parametrize("streaming", [False, True])
async def test_garbage_bodies_are_server_errors_and_fail_over(fake_upstream, garbage, streaming):
    fake_upstream.add_fault("claude-primary", garbage)
    route: dict[str, Any] = {"retry": {"attempts": 1}}
    if streaming:
        route["latency_budget"] = {"idle": "1s"}  # complete() then reads a stream
    async with make_router(fake_upstream, route) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "server_error"), ("secondary", "ok")]
    assert fake_upstream.log[0].stream is streaming


@pytest.mark.parametrize("streaming", [False, True])
async def test_empty_content_is_an_empty_answer(fake_upstream, streaming):
    fake_upstream.add_fault("claude-primary", Fault.empty_choices())
    async with make_router(fake_upstream) as router:
        result = (await stream_all(router))[1] if streaming else await router.complete("chat", USER)
    assert (result.target, result.text, result.finish_reason) == ("primary", "", "stop")


async def test_auth_failure_fails_over_and_never_shows_the_key(fake_upstream):
    fake_upstream.add_fault("*", Fault.unauthorized())
    async with make_router(fake_upstream) as router:
        with pytest.raises(AllTargetsFailed) as caught:
            await router.complete("chat", USER)
    assert trail(caught.value) == [("primary", "auth"), ("secondary", "auth")]
    rendered = str(caught.value) + "".join(str(a) for a in caught.value.attempts) + repr(router.policy)
    assert SECRET not in rendered and SECRET[-8:] not in rendered


async def test_an_error_that_quotes_the_key_is_redacted(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.http(400, f"bad header: Bearer {SECRET}"))
    fake_upstream.add_fault("claude-secondary", Fault.http(403, f"key {SECRET} may not use this model"))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as bad:
            await router.complete("chat", USER)
        fake_upstream.clear_faults()
        fake_upstream.add_fault("*", Fault.http(403, f"key {SECRET} may not use this model"))
        with pytest.raises(AllTargetsFailed) as forbidden:
            await router.complete("chat", USER)
    assert bad.value.kind is ErrorKind.BAD_REQUEST and SECRET not in str(bad.value)
    rendered = str(forbidden.value) + "".join(str(a) for a in forbidden.value.attempts)
    assert "auth" in rendered and SECRET not in rendered


async def test_bad_request_is_raised_at_once(fake_upstream):
    fake_upstream.add_fault("claude-primary", Fault.http(400, "max_tokens: must be at least 1"))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as caught:
            await router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.status == 400
    assert "invalid_request_error" in caught.value.message and fake_upstream.count() == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls_come_back_whole(fake_upstream, streaming):
    fake_upstream.set_tool_call("claude-primary", "get_weather", {"city": "Paris", "unit": "celsius"})
    route = {"latency_budget": {"idle": "1s"}} if streaming else None
    async with make_router(fake_upstream, route) as router:
        result = await router.complete("chat", USER, tools=[WEATHER_TOOL], tool_choice="required")
    assert result.finish_reason == "tool_calls" and len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    assert fake_upstream.log[0].stream is streaming


async def test_a_tool_round_trip_is_accepted(fake_upstream):
    conversation = [
        {"role": "system", "content": "Use the tools."},
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny, 21 C"},
    ]
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", conversation, tools=[WEATHER_TOOL])
    assert result.text == "Hello from claude-primary." and result.usage.input_tokens > 5


async def test_models_are_listed(fake_upstream):
    fake_upstream.set_reply("claude-opus", "x")
    fake_upstream.set_reply("claude-haiku", "y")
    provider = direct(fake_upstream)
    try:
        models = await provider.list_models()
    finally:
        await provider.aclose()
    assert {"claude-opus", "claude-haiku"} <= set(models)
    assert fake_upstream.log[-1].wire == "anthropic"


async def test_without_a_key_calls_fail_as_auth(fake_upstream, monkeypatch, tmp_path):
    for variable in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile on disk: the SDK finds no credentials
    spec = ProviderSpec(type="anthropic", base_url=fake_upstream.anthropic_base_url)
    provider = AnthropicProvider("claude", spec, None)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(Call("claude-primary", USER, 5.0))
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.AUTH and fake_upstream.count() == 0
