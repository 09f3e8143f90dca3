"""The OpenAI adapter through the real openai SDK against the loopback fake upstream, under every fault."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from router import AllTargetsFailed, ErrorKind, Policy, ProviderError, Router, StreamBroken
from router.results import Completion
from router.testing import FakeUpstream, Fault

USER = [{"role": "user", "content": "Tell me something."}]
SECRET = "sk-test-0123456789abcdefghijklmnop"


def make_router(upstream: FakeUpstream, route: dict[str, Any] | None = None, **targets: Any) -> Router:
    provider = {
        "type": "openai_compatible",
        "base_url": upstream.base_url,
        "api_key": SECRET,
        "breaker": {"fail_max": 100},
    }
    policy = Policy.model_validate(
        {
            "providers": {"up": provider},
            "targets": targets
            or {
                "primary": {
                    "provider": "up",
                    "model": "primary-model",
                    "price": {"input": 1.0, "output": 2.0},
                },
                "secondary": {
                    "provider": "up",
                    "model": "secondary-model",
                    "price": {"input": 3.0, "output": 4.0},
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


def trail(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def stream_all(router: Router) -> tuple[str, Completion]:
    text, final = "", None
    async for item in router.stream("chat", USER):
        if isinstance(item, Completion):
            final = item
        else:
            text += item
    assert final is not None
    return text, final


async def test_answer_usage_and_cost(fake_upstream):
    fake_upstream.set_reply("primary-model", "Hello from the primary.")
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER, max_tokens=20)
    assert result.text == "Hello from the primary." and result.finish_reason == "stop"
    assert (result.target, result.provider, result.model) == ("primary", "up", "primary-model")
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.cost_usd == pytest.approx(
        result.usage.input_tokens * 1e-6 + result.usage.output_tokens * 2e-6
    )


async def test_429_retry_after_ms_is_honoured(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.rate_limited(retry_after_ms=150), times=1)
    async with make_router(fake_upstream) as router:
        started = time.monotonic()
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "rate_limited"), ("primary", "ok")]
    assert time.monotonic() - started >= 0.15


async def test_429_without_retry_after_backs_off_then_fails_over(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.rate_limited())
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "rate_limited"), ("primary", "rate_limited"), ("secondary", "ok")]


async def test_500_once_is_retried(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.server_error(), times=1)
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "server_error"), ("primary", "ok")]
    assert result.attempts[0].status == 500


async def test_503_persistent_fails_over(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.unavailable())
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert result.target == "secondary" and [a.status for a in result.attempts] == [503, 503, None]


async def test_outage_window_then_healthy(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.unavailable(), end=fake_upstream.elapsed() + 0.3)
    async with make_router(fake_upstream, {"retry": {"attempts": 1}}) as router:
        during = await router.complete("chat", USER)
        await asyncio.sleep(0.35)
        after = await router.complete("chat", USER)
    assert (during.target, after.target) == ("secondary", "primary")


async def test_tcp_reset_is_a_connection_error(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.reset())
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "connection"), ("primary", "connection"), ("secondary", "ok")]


async def test_no_response_times_out_and_is_not_retried(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.hang())
    async with make_router(fake_upstream, {"latency_budget": {"per_attempt": "200ms"}}) as router:
        started = time.monotonic()
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "timeout"), ("secondary", "ok")]
    assert 0.2 <= time.monotonic() - started < 1.0


async def test_slow_first_token_fails_over_while_it_is_free(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.slow_first_token(2.0))
    async with make_router(fake_upstream, {"latency_budget": {"first_token": "200ms"}}) as router:
        text, final = await stream_all(router)
    assert final.target == "secondary" and trail(final)[0] == ("primary", "timeout")
    assert text == final.text and text


async def test_stream_cut_raises_with_the_partial_text(fake_upstream):
    fake_upstream.set_reply("primary-model", "one two three four five six")
    fake_upstream.add_fault("primary-model", Fault.cut(2))
    async with make_router(fake_upstream, {"stream_recovery": "raise"}) as router:
        with pytest.raises(StreamBroken) as caught:
            await stream_all(router)
    assert caught.value.received and "one two three four five six".startswith(caught.value.received)
    assert caught.value.received != "one two three four five six"


async def test_complete_restarts_a_cut_stream_elsewhere(fake_upstream):
    fake_upstream.set_reply("secondary-model", "The whole answer.")
    fake_upstream.add_fault("primary-model", Fault.cut(2))
    async with make_router(fake_upstream, {"latency_budget": {"idle": "1s"}}) as router:
        result = await router.complete("chat", USER)
    assert result.text == "The whole answer." and trail(result) == [
        ("primary", "stream_broken"),
        ("secondary", "ok"),
    ]


async def test_stream_stall_after_output_raises(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.stall(2, 5.0))  # after the role chunk and the first text
    async with make_router(
        fake_upstream, {"stream_recovery": "raise", "latency_budget": {"idle": "200ms"}}
    ) as router:
        with pytest.raises(StreamBroken, match="stalled") as caught:
            await stream_all(router)
    assert caught.value.received


async def test_stream_stall_before_output_fails_over(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.stall(1, 5.0))  # after the role chunk only
    async with make_router(fake_upstream, {"latency_budget": {"idle": "200ms"}}) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", "timeout"), ("secondary", "ok")] and text


async def test_malformed_chunk_is_skipped_and_noted(fake_upstream):
    fake_upstream.set_reply("primary-model", "alpha beta gamma delta")
    fake_upstream.add_fault("primary-model", Fault.malformed(1))
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert text == "alpha beta gamma delta" and final.target == "primary"
    assert any("malformed" in w for w in final.warnings)


async def test_stream_without_done_but_with_finish_is_complete(fake_upstream):
    fake_upstream.set_reply("primary-model", "finished properly")
    fake_upstream.add_fault("primary-model", Fault.no_done())
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert text == "finished properly" and final.finish_reason == "stop" and final.usage.output_tokens > 0


async def test_context_length_fails_over_to_a_larger_window(fake_upstream):
    fake_upstream.add_fault("small-model", Fault.context_length(8000))
    router = make_router(
        fake_upstream,
        small={"provider": "up", "model": "small-model", "context_window": 8000},
        large={"provider": "up", "model": "large-model", "context_window": 200000},
    )
    async with router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("small", "context_length"), ("large", "ok")]


async def test_content_filter_reason_reaches_the_caller(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.content_filter("violence"))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as caught:
            await router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.CONTENT_FILTER and "violence" in str(caught.value)
    assert fake_upstream.count("secondary-model") == 0


async def test_prefill_never_reaches_a_target_that_rejects_it(fake_upstream):
    fake_upstream.add_fault("strict-model", Fault.reject_prefill())
    router = make_router(
        fake_upstream,
        strict={"provider": "up", "model": "strict-model", "capabilities": {"prefill": False}},
        lenient={"provider": "up", "model": "lenient-model", "capabilities": {"prefill": True}},
    )
    async with router:
        result = await router.complete("chat", [*USER, {"role": "assistant", "content": "Well,"}])
    assert result.target == "lenient" and fake_upstream.count("strict-model") == 0


@pytest.mark.parametrize("garbage", [Fault.html(), Fault.invalid_json(), Fault.empty_choices()])
async def test_garbage_bodies_are_server_errors_and_fail_over(fake_upstream, garbage):
    fake_upstream.add_fault("primary-model", garbage)
    async with make_router(fake_upstream, {"retry": {"attempts": 1}}) as router:
        result = await router.complete("chat", USER)
    assert trail(result) == [("primary", "server_error"), ("secondary", "ok")]


async def test_auth_failure_fails_over_and_never_shows_the_key(fake_upstream):
    fake_upstream.add_fault("*", Fault.unauthorized())
    async with make_router(fake_upstream) as router:
        with pytest.raises(AllTargetsFailed) as caught:
            await router.complete("chat", USER)
    assert trail(caught.value) == [("primary", "auth"), ("secondary", "auth")]
    rendered = str(caught.value) + "".join(str(a) for a in caught.value.attempts) + repr(router.policy)
    assert SECRET not in rendered and SECRET[-8:] not in rendered


async def test_bad_request_is_raised_at_once(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.http(400, "temperature must be <= 2"))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as caught:
            await router.complete("chat", USER, temperature=5.0)
    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.status == 400
    assert fake_upstream.count() == 1


async def test_an_error_event_inside_the_stream_is_classified_not_skipped(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.overloaded_in_stream(0))
    async with make_router(fake_upstream, {"retry": {"attempts": 1}}) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", "server_error"), ("secondary", "ok")] and text


async def test_an_error_event_after_output_breaks_the_stream(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.overloaded_in_stream(3))
    async with make_router(fake_upstream, {"stream_recovery": "raise"}) as router:
        with pytest.raises(StreamBroken, match="error event"):
            await stream_all(router)


async def test_tool_calls_come_back_whole(fake_upstream):
    fake_upstream.set_tool_call("tool-model", "get_weather", {"city": "Paris"})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    router = make_router(
        fake_upstream,
        plain={"provider": "up", "model": "plain-model"},
        tooled={"provider": "up", "model": "tool-model", "capabilities": {"tools": True}},
    )
    async with router:
        whole = await router.complete("chat", USER, tools=tools)
        chunks = [item async for item in router.stream("chat", USER, tools=tools)]
    assert whole.target == "tooled" and whole.finish_reason == "tool_calls"  # `plain` cannot take tools
    assert [(c.name, json.loads(c.arguments)) for c in whole.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    streamed = chunks[-1]
    assert isinstance(streamed, Completion)
    assert [(c.name, json.loads(c.arguments)) for c in streamed.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert fake_upstream.count("plain-model") == 0
