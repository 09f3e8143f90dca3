"""Hedging and streaming: who wins, what the caller sees, what never passes for success."""

from __future__ import annotations

import pytest

from router import ErrorKind, StreamBroken, StreamRestart
from router.results import Completion, Outcome
from router.testing.scripted import Step

from .conftest import USER


def outcomes(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def collect(stream) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    final = None
    async for item in stream:
        if isinstance(item, Completion):
            final = item
        else:
            deltas.append(item)
    assert final is not None
    return deltas, final


async def test_hedge_starts_the_next_target_and_the_first_answer_wins(rig, clock):
    r = rig({"hedge_after": "200ms"}, breaker={"fail_max": 1})
    r.script("a", Step.reply("slow", delay=1.0))
    r.script("b", Step.reply("fast", delay=0.3))
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert result.text == "fast" and result.target == "b"
    assert clock.monotonic() - start == pytest.approx(0.5)
    assert sorted(outcomes(result)) == [("a", Outcome.CANCELLED), ("b", "ok")]
    # The loser's cancellation is not a failure: with fail_max 1 it would have opened.
    assert r.transitions == []
    assert (await r.router.complete("chat", USER)).target == "a"


async def test_no_hedge_when_the_primary_answers_in_time(rig):
    r = rig({"hedge_after": "200ms"})
    r.script("a", Step.reply("quick", delay=0.1))
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "ok")] and r.p2.count() == 0


async def test_stream_yields_deltas_then_the_completion(rig):
    r = rig()
    r.script("a", Step.reply("one two three"))
    deltas, final = await collect(r.router.stream("chat", USER))
    assert deltas == ["one", " two", " three"]
    assert final.text == "one two three" and final.finish_reason == "stop"
    assert outcomes(final) == [("a", "ok")] and final.usage.output_tokens > 0


async def test_stream_failover_is_free_before_the_first_token(rig):
    r = rig()
    r.script(
        "a", Step.fail(ErrorKind.SERVER_ERROR, status=503), Step.fail(ErrorKind.SERVER_ERROR, status=503)
    )
    r.script("b", Step.reply("from b"))
    deltas, final = await collect(r.router.stream("chat", USER))
    assert "".join(deltas) == "from b" and final.target == "b"


async def test_stream_first_token_timeout_fails_over(rig, clock):
    r = rig({"latency_budget": {"first_token": "500ms"}})
    r.script("a", Step.reply("late", delay=2.0))
    start = clock.monotonic()
    _, final = await collect(r.router.stream("chat", USER))
    assert final.target == "b" and outcomes(final)[0] == ("a", "timeout")
    assert clock.monotonic() - start == pytest.approx(0.5)


async def test_stream_cut_after_output_raises_with_what_was_received(rig):
    r = rig({"stream_recovery": "raise"})
    r.script("a", Step.reply("one two three four", cut_after=2))
    received: list[str] = []
    with pytest.raises(StreamBroken) as caught:
        async for item in r.router.stream("chat", USER):
            received.append(item)
    assert received == ["one", " two"]
    assert caught.value.received == "one two"
    assert caught.value.attempts[-1].outcome == ErrorKind.STREAM_BROKEN


async def test_stream_stall_past_idle_raises(rig, clock):
    r = rig({"latency_budget": {"idle": "1s"}, "stream_recovery": "raise"})
    r.script("a", Step.reply("one two three", stall_after=1))
    with pytest.raises(StreamBroken, match="stalled"):
        async for _ in r.router.stream("chat", USER):
            pass


async def test_stream_without_finish_reason_is_not_a_success(rig):
    r = rig({"stream_recovery": "raise"})
    r.script("a", Step.reply("one two", finish_reason=None))
    with pytest.raises(StreamBroken, match="without a finish reason"):
        async for _ in r.router.stream("chat", USER):
            pass


async def test_malformed_event_is_skipped_and_noted(rig):
    r = rig()
    r.script("a", Step.reply("one two three", malformed_after=1))
    _, final = await collect(r.router.stream("chat", USER))
    assert final.text == "one two three"
    assert any("malformed" in w for w in final.warnings)


async def test_complete_restarts_a_broken_stream_on_the_next_target(rig):
    r = rig({"latency_budget": {"idle": "1s"}})
    r.script("a", Step.reply("partial answer that breaks", cut_after=2))
    r.script("b", Step.reply("a whole answer"))
    result = await r.router.complete("chat", USER)
    assert result.text == "a whole answer" and result.target == "b"
    assert outcomes(result) == [("a", "stream_broken"), ("b", "ok")]


async def test_complete_restarts_a_broken_stream_even_on_a_raise_route(rig):
    # `raise` is for a caller who saw part of the answer; complete()'s caller saw nothing.
    r = rig({"latency_budget": {"idle": "1s"}, "stream_recovery": "raise"})
    r.script("a", Step.reply("partial answer that breaks", cut_after=2))
    r.script("b", Step.reply("a whole answer"))
    result = await r.router.complete("chat", USER)
    assert result.text == "a whole answer"
    assert outcomes(result) == [("a", "stream_broken"), ("b", "ok")]


async def test_stream_with_restart_recovery_says_so_then_gives_a_whole_answer(rig):
    r = rig({"stream_recovery": "restart"})
    r.script("a", Step.fail(ErrorKind.CONNECTION, text="broken answer here", after_chunks=2))
    r.script("b", Step.reply("whole answer"))
    items = [item async for item in r.router.stream("chat", USER)]
    assert items[:2] == ["broken", " answer"]
    assert items[2] == StreamRestart("a", "broken answer", "b", items[2].reason)
    assert items[3:-1] == ["whole", " answer"] and items[-1].text == "whole answer"


async def test_hedged_stream_first_token_wins(rig, clock):
    r = rig({"hedge_after": "100ms"})
    r.script("a", Step.reply("slow one", delay=1.0))
    r.script("b", Step.reply("fast one", delay=0.05))
    deltas, final = await collect(r.router.stream("chat", USER))
    assert "".join(deltas) == "fast one" and final.target == "b"
    assert ("a", Outcome.CANCELLED) in outcomes(final)


async def test_abandoned_stream_frees_the_probe_permit(rig, clock):
    r = rig({"retry": {"attempts": 1}}, breaker={"fail_max": 1, "reset_timeout": "1s"})
    r.script("a", Step.fail(ErrorKind.SERVER_ERROR), Step.reply("one two three"))
    await r.router.complete("chat", USER)  # opens a's breaker
    clock.advance(2.0)
    stream = r.router.stream("chat", USER)
    assert await anext(stream) == "one"  # the half-open probe is streaming
    await stream.aclose()
    assert (await r.router.complete("chat", USER)).target == "a"
