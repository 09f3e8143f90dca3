"""A stream that breaks after output began: continued on a prefill target, else restarted, and said so."""

from __future__ import annotations

from typing import Any

import pytest

from router import ErrorKind, StreamBroken, StreamRestart, Usage
from router._selection import estimate_tokens
from router.results import Completion
from router.testing.scripted import ScriptedProvider, Step

from .conftest import USER

PREFILL = {"capabilities": {"prefill": True}}


def targets(**prefill: bool) -> dict[str, Any]:
    """Targets a (p1), b and c (p2), each declaring prefill as given (default: not)."""
    provider = {"a": "p1", "b": "p2", "c": "p2"}
    return {
        name: {
            "provider": provider[name],
            "model": name,
            "price": {"input": 1.0, "output": 2.0},
            "capabilities": {"prefill": prefill.get(name, False)},
        }
        for name in provider
    }


async def items_of(stream) -> list[Any]:
    return [item async for item in stream]


def trail(completion_or_error) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in completion_or_error.attempts]


def last_message(provider: ScriptedProvider, model: str) -> dict[str, Any]:
    calls = [call for call in provider.calls if call.model == model]
    return dict(calls[-1].messages[-1])


def continued(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


CUT = Step.reply("one two three four", cut_after=2)


async def test_a_cut_stream_is_continued_seamlessly_on_a_prefill_target(rig):
    r = rig(targets=targets(b=True))
    r.script("a", CUT)
    r.script("b", Step(text=" three four"))  # a word per chunk: "", " three", " four"
    items = await items_of(r.router.stream("chat", USER))
    final = items[-1]
    assert items[:-1] == ["one", " two", " three", " four"]  # no event: the caller sees one answer
    assert final.text == "one two three four" and final.target == "b"
    assert trail(final) == [("a", "stream_broken"), ("b", "ok")]
    assert last_message(r.p2, "b") == continued("one two")
    # Usage and cost are both parts': a's estimated (it broke before reporting it), b's reported.
    a_usage = Usage(estimate_tokens(USER), len("one two") // 4 + 1)
    b_usage = ScriptedProvider._usage(r.p2.calls[-1], " three four")
    assert final.usage == Usage(
        a_usage.input_tokens + b_usage.input_tokens, a_usage.output_tokens + b_usage.output_tokens
    )
    assert final.cost_usd == pytest.approx(final.usage.input_tokens * 1e-6 + final.usage.output_tokens * 2e-6)
    assert any("a: the broken stream's usage is estimated" in w for w in final.warnings)


async def test_a_stalled_stream_is_continued(rig, clock):
    r = rig({"latency_budget": {"idle": "1s"}}, targets=targets(b=True))
    r.script("a", Step.reply("one two three", stall_after=1))
    r.script("b", Step(text=" two three"))
    start = clock.monotonic()
    items = await items_of(r.router.stream("chat", USER))
    assert items[:-1] == ["one", " two", " three"] and items[-1].text == "one two three"
    assert clock.monotonic() - start == pytest.approx(1.0)  # one idle budget, then b at once
    assert "stalled" in (items[-1].attempts[0].error or "")


async def test_the_default_is_continue_and_continue_is_the_same(rig):
    for route in (None, {"stream_recovery": "continue"}):
        r = rig(route, targets=targets(b=True))
        r.script("a", CUT)
        r.script("b", Step(text=" three four"))
        items = await items_of(r.router.stream("chat", USER))
        assert not any(isinstance(item, StreamRestart) for item in items)
        assert items[-1].text == "one two three four"


async def test_without_a_prefill_target_the_answer_restarts_and_says_so(rig):
    r = rig(targets=targets())
    r.script("a", CUT)
    r.script("b", Step.reply("a new answer"))
    items = await items_of(r.router.stream("chat", USER))
    assert items[:2] == ["one", " two"]
    restart = items[2]
    assert isinstance(restart, StreamRestart)
    assert (restart.broken, restart.replaced, restart.target) == ("a", "one two", "b")
    assert "without a finish reason" in restart.reason
    assert items[3:-1] == ["a", " new", " answer"]
    final = items[-1]
    assert final.text == "a new answer" and final.target == "b"
    assert trail(final) == [("a", "stream_broken"), ("b", "ok")]
    assert last_message(r.p2, "b") == USER[0]  # a target that does not declare prefill never gets one
    assert final.usage == ScriptedProvider._usage(r.p2.calls[-1], "a new answer")  # the new answer's


async def test_a_prefill_target_later_in_the_order_continues_before_an_earlier_one_restarts(rig):
    r = rig({"targets": ["a", "b", "c"]}, targets=targets(c=True))
    r.script("a", CUT)
    r.script("c", Step(text=" three four"))
    items = await items_of(r.router.stream("chat", USER))
    assert items[-1].text == "one two three four" and items[-1].target == "c"
    assert r.p2.count("b") == 0


async def test_a_target_that_refuses_the_prefill_restarts_the_answer_instead(rig):
    r = rig(targets=targets(b=True))
    r.script("a", CUT)
    r.script(
        "b",
        Step.fail(ErrorKind.BAD_REQUEST, status=400, message="assistant prefill is not supported"),
        Step.reply("a new answer"),
    )
    items = await items_of(r.router.stream("chat", USER))
    restart = next(item for item in items if isinstance(item, StreamRestart))
    assert (restart.broken, restart.replaced, restart.target) == ("a", "one two", "b")
    final = items[-1]
    assert final.text == "a new answer"
    assert trail(final) == [("a", "stream_broken"), ("b", "bad_request"), ("b", "ok")]
    assert last_message(r.p2, "b") == USER[0]  # the restart went without the prefill
    assert r.router._runtimes["b"].breaker.admit()  # the refusal said nothing about b's health


async def test_a_refused_prefill_is_never_the_final_error(rig):
    r = rig({"retry": {"attempts": 1}}, targets=targets(b=True))
    r.script("a", CUT)
    r.script(
        "b",
        Step.fail(ErrorKind.BAD_REQUEST, status=400, message="assistant prefill is not supported"),
        Step.fail(ErrorKind.SERVER_ERROR, status=503),
    )
    with pytest.raises(StreamBroken) as caught:
        await items_of(r.router.stream("chat", USER))
    assert caught.value.received == "one two" and caught.value.target == "a"
    assert trail(caught.value) == [("a", "stream_broken"), ("b", "bad_request"), ("b", "server_error")]


async def test_a_continuation_that_fails_gives_way_to_a_restart(rig):
    r = rig({"targets": ["a", "b", "c"], "retry": {"attempts": 1}}, targets=targets(b=True))
    r.script("a", CUT)
    r.script("b", Step.fail(ErrorKind.SERVER_ERROR, status=503))
    r.script("c", Step.reply("from c"))
    items = await items_of(r.router.stream("chat", USER))
    restart = next(item for item in items if isinstance(item, StreamRestart))
    assert (restart.broken, restart.replaced, restart.target) == ("a", "one two", "c")
    assert items[-1].text == "from c"
    assert trail(items[-1]) == [("a", "stream_broken"), ("b", "server_error"), ("c", "ok")]


async def test_a_continuation_that_breaks_is_continued_again(rig):
    r = rig({"targets": ["a", "b", "c"]}, targets=targets(b=True, c=True))
    r.script("a", Step.reply("one two three four five", cut_after=2))
    r.script("b", Step(text=" three four five", cut_after=2))
    r.script("c", Step(text=" four five"))
    items = await items_of(r.router.stream("chat", USER))
    assert "".join(items[:-1]) == "one two three four five" == items[-1].text
    assert trail(items[-1]) == [("a", "stream_broken"), ("b", "stream_broken"), ("c", "ok")]
    assert last_message(r.p2, "c") == continued("one two three")
    # Three parts: a's and b's estimated (each from its own request), c's reported.
    estimated = estimate_tokens(USER) + estimate_tokens([*USER, continued("one two")])
    assert (
        items[-1].usage.input_tokens == estimated + ScriptedProvider._usage(r.p2.calls[-1], "").input_tokens
    )


async def test_a_restart_after_a_continuation_replaces_the_whole_text_shown(rig):
    r = rig({"targets": ["a", "b", "c"]}, targets=targets(b=True))
    r.script("a", Step.reply("one two three four", cut_after=2))
    r.script("b", Step(text=" three four", cut_after=2))
    r.script("c", Step.reply("fresh"))
    items = await items_of(r.router.stream("chat", USER))
    restart = next(item for item in items if isinstance(item, StreamRestart))
    assert (restart.broken, restart.replaced, restart.target) == ("b", "one two three", "c")
    assert items[-1].text == "fresh"


async def test_a_space_the_prefill_lost_is_not_written_twice(rig):
    r = rig(targets=targets(b=True))
    r.script("a", Step.reply("Hello,  world", cut_after=2))  # "Hello," then " ": the text ends in a space
    r.script("b", Step(text=" world"))  # the wire trimmed the prefill, so the model writes the space again
    items = await items_of(r.router.stream("chat", USER))
    assert items[-1].text == "Hello, world" == "".join(items[:-1])


async def test_with_nobody_left_the_break_is_raised_with_the_whole_trail(rig):
    r = rig({"targets": ["a"]})
    r.script("a", CUT)
    received: list[Any] = []
    with pytest.raises(StreamBroken) as caught:
        async for item in r.router.stream("chat", USER):
            received.append(item)
    assert received == ["one", " two"] and caught.value.received == "one two"
    assert trail(caught.value) == [("a", "stream_broken")]


async def test_a_continued_answer_that_breaks_for_good_raises_with_all_of_the_text(rig):
    r = rig(targets=targets(b=True))
    r.script("a", CUT)
    r.script("b", Step(text=" three four", cut_after=2))
    with pytest.raises(StreamBroken) as caught:
        await items_of(r.router.stream("chat", USER))
    assert caught.value.received == "one two three"
    assert trail(caught.value) == [("a", "stream_broken"), ("b", "stream_broken")]


async def test_raise_recovery_raises_and_calls_nobody_else(rig):
    r = rig({"stream_recovery": "raise"}, targets=targets(b=True))
    r.script("a", CUT)
    with pytest.raises(StreamBroken):
        await items_of(r.router.stream("chat", USER))
    assert r.p2.count() == 0


async def test_restart_recovery_restarts_even_on_a_prefill_target(rig):
    r = rig({"stream_recovery": "restart"}, targets=targets(b=True))
    r.script("a", CUT)
    r.script("b", Step.reply("again"))
    items = await items_of(r.router.stream("chat", USER))
    assert isinstance(items[2], StreamRestart) and items[-1].text == "again"
    assert last_message(r.p2, "b") == USER[0]


async def test_a_route_that_retries_broken_streams_continues_on_the_same_target(rig):
    r = rig({"retry": {"on": ["stream_broken"], "attempts": 2}}, targets=targets(a=True))
    r.script("a", CUT, Step(text=" three four"))
    items = await items_of(r.router.stream("chat", USER))
    assert items[-1].text == "one two three four" and items[-1].target == "a"
    assert trail(items[-1]) == [("a", "stream_broken"), ("a", "ok")]
    assert last_message(r.p1, "a") == continued("one two")


async def test_complete_restarts_without_a_prefill_even_on_a_prefill_target(rig):
    r = rig({"latency_budget": {"idle": "1s"}}, targets=targets(b=True))
    r.script("a", CUT)
    r.script("b", Step.reply("whole"))
    result = await r.router.complete("chat", USER)
    assert isinstance(result, Completion) and result.text == "whole"
    assert last_message(r.p2, "b") == USER[0]


async def test_hooks_hear_of_the_failover(clock):
    from router import Router

    from .conftest import build_policy

    events: list[Any] = []
    p1, p2 = ScriptedProvider("p1", clock=clock), ScriptedProvider("p2", clock=clock)
    router = Router(
        build_policy(targets=targets(b=True)),
        clock=clock,
        providers={"p1": p1, "p2": p2},
        on_event=events.append,
    )
    p1.script("a", CUT)
    p2.script("b", Step(text=" three four"))
    await items_of(router.stream("chat", USER))
    assert [(type(e).__name__, e.target) for e in events if type(e).__name__ != "AttemptEvent"] == [
        ("FailoverEvent", "a")
    ]


async def test_the_hedge_that_lost_may_continue_the_stream_that_won(rig):
    r = rig({"hedge_after": "100ms"}, targets=targets(b=True))
    r.script("a", Step.reply("one two three four", delay=0.3, cut_after=2))
    r.script("b", Step.reply("from b", delay=0.5), Step(text=" three four"))
    items = await items_of(r.router.stream("chat", USER))
    assert items[-1].text == "one two three four" and items[-1].target == "b"
    assert trail(items[-1]) == [("b", "cancelled"), ("a", "stream_broken"), ("b", "ok")]
