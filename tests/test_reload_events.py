"""Hot reload and the event hook."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from router import ErrorKind, PolicyError, Router
from router.events import AttemptEvent, FailoverEvent, ReloadEvent, RetryEvent
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

USER = [{"role": "user", "content": "hi"}]

POLICY = """\
providers:
  p1: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", breaker: {fail_max: 1}}
  p2: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  a: {provider: p1, model: a}
  b: {provider: p2, model: b}
routes:
  chat:
    targets: [%s]
    retry: {attempts: 2, backoff_base: 10ms}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY % "a, b")
    return path


def make(path: Path, clock: Any = None, **kwargs: Any) -> tuple[Router, ScriptedProvider, ScriptedProvider]:
    p1, p2 = ScriptedProvider("p1", clock=clock), ScriptedProvider("p2", clock=clock)
    router = Router.from_file(path, providers={"p1": p1, "p2": p2}, clock=clock, **kwargs)
    return router, p1, p2


async def test_reload_switches_new_requests_and_lets_old_ones_finish(policy_file):
    clock = FakeClock()
    router, p1, _ = make(policy_file, clock)
    p1.script("a", Step.reply("old plan", delay=5.0))
    in_flight = asyncio.ensure_future(router.complete("chat", USER))
    await asyncio.sleep(0)
    policy_file.write_text(POLICY % "b")
    router.reload()
    assert router.version == 2
    assert (await router.complete("chat", USER)).target == "b"
    assert (await in_flight).text == "old plan"


async def test_an_invalid_edit_keeps_the_old_policy_and_says_where(policy_file):
    events: list[Any] = []
    router, _, _ = make(policy_file, on_event=events.append)
    policy_file.write_text((POLICY % "a, b").replace("retry:", "retyr:"))
    with pytest.raises(PolicyError) as caught:
        router.reload()
    assert f"{policy_file}:10:5: unknown key 'retyr'" in str(caught.value)
    assert router.version == 1 and (await router.complete("chat", USER)).target == "a"
    [event] = [e for e in events if isinstance(e, ReloadEvent)]
    assert not event.ok and event.version == 1 and "retyr" in event.issues[0]


async def test_state_survives_a_reload_for_targets_that_remain(policy_file):
    router, p1, _ = make(policy_file)
    p1.script("a", Step.fail(ErrorKind.AUTH, status=401))
    await router.complete("chat", USER)  # fail_max 1: a's breaker opens
    kept_client = router._providers["p2"]
    policy_file.write_text((POLICY % "a, b").replace("retry: {attempts: 2", "retry: {attempts: 3"))
    router.reload()
    result = await router.complete("chat", USER)
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "breaker_open"), ("b", "ok")]
    assert router._providers["p2"] is kept_client


async def test_a_changed_provider_gets_a_new_client_and_the_old_one_is_closed(policy_file):
    router, p1, _ = make(policy_file)
    policy_file.write_text((POLICY % "a, b").replace("breaker: {fail_max: 1}", "breaker: {fail_max: 2}"))
    router._overrides.pop("p1")  # let the reload build a real client for the changed provider
    router.reload()
    assert router._providers["p1"] is not p1 and not p1.closed
    await router.aclose()
    assert p1.closed


async def test_events_trace_attempts_retries_and_failovers(policy_file):
    policy_file.write_text((POLICY % "a, b").replace("fail_max: 1", "fail_max: 5"))
    events: list[Any] = []
    router, p1, _ = make(policy_file, FakeClock(), on_event=events.append)
    p1.script("a", Step.fail(ErrorKind.SERVER_ERROR), Step.fail(ErrorKind.SERVER_ERROR))
    await router.complete("chat", USER, metadata={"tenant": "acme"})
    assert all(e.metadata == {"tenant": "acme"} for e in events if isinstance(e, AttemptEvent))
    assert "tenant" not in p1.calls[0].options  # never sent upstream
    kinds = [type(e).__name__ for e in events if not hasattr(e, "old")]
    assert kinds == ["AttemptEvent", "RetryEvent", "AttemptEvent", "FailoverEvent", "AttemptEvent"]
    assert isinstance(events[-1], AttemptEvent) and events[-1].target == "b" and events[-1].outcome == "ok"
    assert any(isinstance(e, RetryEvent) and e.kind == "server_error" for e in events)
    assert any(isinstance(e, FailoverEvent) and e.target == "a" for e in events)


async def test_a_hook_that_raises_never_breaks_a_request(policy_file, caplog):
    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    router, _, _ = make(policy_file, on_event=broken)
    assert (await router.complete("chat", USER)).text == "ok"
    assert "on_event hook raised" in caplog.text


async def test_watch_reloads_when_the_file_changes(policy_file):
    router, _, _ = make(policy_file)
    watcher = asyncio.ensure_future(router.watch())
    await asyncio.sleep(0.2)
    policy_file.write_text(POLICY % "b")
    for _ in range(100):
        if router.version == 2:
            break
        await asyncio.sleep(0.05)
    watcher.cancel()
    assert router.version == 2 and (await router.complete("chat", USER)).target == "b"


async def test_sighup_reloads(policy_file):
    router, _, _ = make(policy_file)
    router.reload_on_sighup()
    policy_file.write_text(POLICY % "b")
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.05)
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    assert router.version == 2
