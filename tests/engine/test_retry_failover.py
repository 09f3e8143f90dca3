"""Retry, failover and deadlines, by error kind, in virtual time."""

from __future__ import annotations

import pytest

from router import AllTargetsFailed, ErrorKind, ProviderError
from router.results import Outcome
from router.testing.scripted import Step

from .conftest import USER


def outcomes(completion_or_error) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in completion_or_error.attempts]


async def test_server_error_is_retried_then_fails_over(rig, clock):
    r = rig({"retry": {"attempts": 3, "backoff_base": "100ms", "backoff_max": "1s"}})
    r.script("a", *[Step.fail(ErrorKind.SERVER_ERROR, status=500)] * 3)
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert result.target == "b" and result.text == "ok"
    assert outcomes(result) == [("a", "server_error")] * 3 + [("b", "ok")]
    # Two full-jitter backoffs: each within [0, 100 ms * 2^(n-1)].
    assert 0 <= clock.monotonic() - start <= 0.1 + 0.2
    assert r.p1.count("a") == 3


async def test_retry_after_is_honoured_exactly(rig, clock):
    r = rig({"retry": {"backoff_max": "5s"}})
    r.script("a", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=2.0))
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "rate_limited"), ("a", "ok")]
    assert clock.monotonic() - start == pytest.approx(2.0)


async def test_a_long_retry_after_moves_on_instead_of_waiting(rig, clock):
    r = rig({"retry": {"backoff_max": "1s"}})
    r.script("a", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=30.0))
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "rate_limited"), ("b", "ok")]
    assert clock.monotonic() == start


async def test_never_sleeps_past_the_deadline(rig, clock):
    r = rig(
        {
            "latency_budget": {"total": "1s"},
            "retry": {"backoff_base": "2s", "backoff_max": "2s", "jitter": "none"},
        }
    )
    r.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "server_error"), ("b", "ok")]
    assert clock.monotonic() == start


async def test_timeout_fails_over_without_retrying_the_silent_target(rig, clock):
    r = rig({"latency_budget": {"per_attempt": "1s"}})
    r.script("a", Step.hang())
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "timeout"), ("b", "ok")]
    assert clock.monotonic() - start == pytest.approx(1.0)
    assert r.p1.count("a") == 1


async def test_timeout_can_be_retried_when_the_route_says_so(rig):
    r = rig({"latency_budget": {"per_attempt": "1s"}, "retry": {"on": ["timeout"]}})
    r.script("a", Step.hang())
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "timeout"), ("a", "ok")]


async def test_attempt_timeout_is_capped_by_the_time_left(rig, clock):
    r = rig({"latency_budget": {"total": "1500ms", "per_attempt": "1s"}})
    r.script("a", Step.hang())
    r.script("b", Step.hang())
    start = clock.monotonic()
    with pytest.raises(AllTargetsFailed) as caught:
        await r.router.complete("chat", USER)
    assert outcomes(caught.value) == [("a", "timeout"), ("b", "timeout")]
    assert [round(a.latency_s, 6) for a in caught.value.attempts] == [1.0, 0.5]
    assert clock.monotonic() - start == pytest.approx(1.5)
    assert "deadline" in str(caught.value)


async def test_caller_deadline_shortens_the_budget(rig, clock):
    r = rig()
    r.script("a", Step.hang())
    r.script("b", Step.hang())
    start = clock.monotonic()
    with pytest.raises(AllTargetsFailed):
        await r.router.complete("chat", USER, deadline=0.25)
    assert clock.monotonic() - start == pytest.approx(0.25)


async def test_context_length_fails_over_only_to_a_larger_window(rig):
    targets = {
        "a": {"provider": "p1", "model": "a", "context_window": 1000},
        "b": {"provider": "p2", "model": "b", "context_window": 500},
        "c": {"provider": "p2", "model": "c", "context_window": 2000},
    }
    r = rig({"targets": ["a", "b", "c"]}, targets=targets)
    r.script("a", Step.fail(ErrorKind.CONTEXT_LENGTH, status=400))
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "context_length"), ("b", Outcome.WINDOW_TOO_SMALL), ("c", "ok")]
    assert r.p2.count("b") == 0
    assert "window 500" in (result.attempts[1].error or "")


async def test_context_length_tries_a_target_whose_window_is_unknown(rig):
    # An undeclared window may be the larger one: with none declared, the fallback is still tried.
    targets = {"a": {"provider": "p1", "model": "a"}, "b": {"provider": "p2", "model": "b"}}
    r = rig(targets=targets)
    r.script("a", Step.fail(ErrorKind.CONTEXT_LENGTH, status=400))
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "context_length"), ("b", "ok")]


async def test_context_length_on_an_unknown_window_still_skips_windows_known_too_small(rig):
    targets = {
        "a": {"provider": "p1", "model": "a", "context_window": 8000},
        "b": {"provider": "p2", "model": "b"},
        "c": {"provider": "p2", "model": "c", "context_window": 4000},
    }
    r = rig({"targets": ["a", "b", "c"]}, targets=targets)
    r.script("a", Step.fail(ErrorKind.CONTEXT_LENGTH, status=400))
    r.script("b", Step.fail(ErrorKind.CONTEXT_LENGTH, status=400))
    with pytest.raises(AllTargetsFailed) as caught:
        await r.router.complete("chat", USER)
    assert outcomes(caught.value) == [
        ("a", "context_length"),
        ("b", "context_length"),
        ("c", Outcome.WINDOW_TOO_SMALL),
    ]


async def test_a_prompt_too_long_for_a_window_skips_that_target(rig):
    targets = {
        "a": {"provider": "p1", "model": "a", "context_window": 50},
        "b": {"provider": "p2", "model": "b", "context_window": 100_000},
    }
    r = rig(targets=targets)
    result = await r.router.complete("chat", [{"role": "user", "content": "x" * 400}])
    assert result.target == "b" and r.p1.count() == 0
    assert outcomes(result) == [("a", Outcome.WINDOW_TOO_SMALL), ("b", "ok")]
    assert "its window is 50" in (result.attempts[0].error or "")


async def test_content_filter_is_not_retried_and_its_reason_reaches_the_caller(rig):
    r = rig()
    r.script("a", Step.fail(ErrorKind.CONTENT_FILTER, status=400, message="violence: high"))
    with pytest.raises(ProviderError) as caught:
        await r.router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.CONTENT_FILTER
    assert "violence: high" in str(caught.value)
    assert r.p1.count() == 1 and r.p2.count() == 0
    assert outcomes(caught.value) == [("a", "content_filter")]


async def test_bad_request_raises_at_once(rig):
    r = rig({"retry": {"attempts": 3}})
    r.script("a", Step.fail(ErrorKind.BAD_REQUEST, status=400, message="temperature out of range"))
    with pytest.raises(ProviderError) as caught:
        await r.router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.target == "a"
    assert r.p1.count() == 1 and r.p2.count() == 0


async def test_auth_fails_over_without_retry(rig):
    r = rig({"retry": {"attempts": 3}})
    r.script("a", Step.fail(ErrorKind.AUTH, status=401))
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "auth"), ("b", "ok")]


async def test_a_route_can_stop_failover_for_a_kind(rig):
    r = rig({"retry": {"attempts": 2}, "failover": {"on": ["timeout"]}})
    r.script("a", Step.fail(ErrorKind.SERVER_ERROR), Step.fail(ErrorKind.SERVER_ERROR))
    with pytest.raises(ProviderError) as caught:
        await r.router.complete("chat", USER)
    assert caught.value.kind is ErrorKind.SERVER_ERROR
    assert r.p2.count() == 0


async def test_all_failed_carries_the_trail(rig):
    r = rig({"retry": {"attempts": 1}})
    r.script("a", Step.fail(ErrorKind.SERVER_ERROR, status=503))
    r.script("b", Step.fail(ErrorKind.CONNECTION))
    with pytest.raises(AllTargetsFailed) as caught:
        await r.router.complete("chat", USER)
    error = caught.value
    assert outcomes(error) == [("a", "server_error"), ("b", "connection")]
    assert error.attempts[0].status == 503 and error.route == "chat"


async def test_retry_budget_caps_retries_across_requests(rig):
    r = rig({"retry": {"attempts": 3}}, retry_budget={"ratio": 0.0, "min_retries": 1})
    r.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 10)
    first = await r.router.complete("chat", USER)
    second = await r.router.complete("chat", USER)
    # One retry in the whole window: the first request takes it, the second moves straight on.
    assert outcomes(first) == [("a", "server_error"), ("a", "server_error"), ("b", "ok")]
    assert outcomes(second) == [("a", "server_error"), ("b", "ok")]
    assert any("retry budget" in w for w in second.warnings)


async def test_an_adapter_crash_becomes_a_server_error_and_a_failover(rig):
    r = rig()

    async def broken(call):
        raise ValueError("garbage from upstream")

    r.p1.complete = broken  # an adapter bug or an unparseable answer
    result = await r.router.complete("chat", [{"role": "user", "content": "hi"}])
    assert outcomes(result)[0] == ("a", "server_error") and result.target == "b"


async def test_max_cost_skips_targets_whose_estimate_is_over(rig):
    r = rig({"max_cost": 0.0015})
    # a: 1 000 output tokens x $2/M = $0.002 > max; b: $0.001.
    result = await r.router.complete("chat", USER, max_tokens=1000)
    assert outcomes(result) == [("a", Outcome.OVER_BUDGET), ("b", "ok")]
    assert "over max_cost $0.0015" in (result.attempts[0].error or "")


async def test_cost_comes_from_usage_and_price(rig):
    r = rig()
    result = await r.router.complete("chat", USER)
    expected = result.usage.input_tokens * 1.0e-6 + result.usage.output_tokens * 2.0e-6
    assert result.cost_usd == pytest.approx(expected) and result.cost_usd > 0
    assert (result.provider, result.model) == ("p1", "a")


async def test_prefill_is_never_sent_to_a_target_that_rejects_it(rig):
    targets = {
        "a": {"provider": "p1", "model": "a", "capabilities": {"prefill": False}},
        "b": {"provider": "p2", "model": "b", "capabilities": {"prefill": True}},
    }
    r = rig(targets=targets)
    messages = [*USER, {"role": "assistant", "content": "Sure, "}]
    result = await r.router.complete("chat", messages)
    assert result.target == "b" and r.p1.count() == 0
    assert outcomes(result) == [("a", Outcome.UNSUPPORTED), ("b", "ok")]
    assert result.attempts[0].error == "takes no assistant prefill"


async def test_no_fitting_target_is_a_clear_error(rig):
    targets = {"a": {"provider": "p1", "model": "a"}, "b": {"provider": "p2", "model": "b"}}
    r = rig(targets=targets)
    with pytest.raises(AllTargetsFailed, match="no target fits") as caught:
        await r.router.complete("chat", [*USER, {"role": "assistant", "content": "Sure"}])
    # Every target considered is in the trail, with why it could not take the request.
    assert outcomes(caught.value) == [("a", Outcome.UNSUPPORTED), ("b", Outcome.UNSUPPORTED)]
    assert str(caught.value).endswith("a: unsupported; b: unsupported")


async def test_a_target_without_tools_or_streaming_is_in_the_trail_with_why(rig):
    targets = {
        "a": {"provider": "p1", "model": "a", "capabilities": {"tools": False, "streaming": False}},
        "b": {"provider": "p2", "model": "b", "capabilities": {"tools": True}},
    }
    r = rig(targets=targets)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    result = await r.router.complete("chat", USER, tools=tools)
    assert [(a.target, a.outcome, a.error) for a in result.attempts] == [
        ("a", Outcome.UNSUPPORTED, "takes no tools"),
        ("b", "ok", None),
    ]
    items = [item async for item in r.router.stream("chat", USER)]
    assert [(a.target, a.outcome, a.error) for a in items[-1].attempts] == [
        ("a", Outcome.UNSUPPORTED, "does not stream"),
        ("b", "ok", None),
    ]


async def test_unknown_route_names_the_known_ones(rig):
    r = rig()
    with pytest.raises(Exception, match="unknown route 'nope'; routes: chat"):
        await r.router.complete("nope", USER)
