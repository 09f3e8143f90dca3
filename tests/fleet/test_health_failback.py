"""The health checker and the failback rules, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest

from router import ErrorKind
from router.state.memory import MemoryStore
from router.testing import FakeClock
from router.testing.scripted import Step

from .test_fleet_in_process import Worker

HEALTH = {"enabled": True, "interval": "10s", "unhealthy_after": 2, "healthy_after": 2}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


def outcomes(result: Any) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def test_failing_probes_mark_a_target_unhealthy_and_selection_skips_it(clock):
    worker = Worker("w", MemoryStore(clock), clock, health=HEALTH)
    worker.p1.script_listing(Step.fail(ErrorKind.CONNECTION), Step.fail(ErrorKind.CONNECTION))
    await worker.router.check_health()
    assert (await worker.ask()).target == "a"  # one bad probe is not a verdict
    clock.advance(10)  # the traffic above is old news: the next round probes again
    await worker.router.check_health()
    result = await worker.ask()
    assert outcomes(result) == [("a", "unhealthy"), ("b", "ok")]
    assert worker.p1.count("a") == 1  # skipped without paying a failed attempt


async def test_recent_traffic_stands_in_for_a_probe(clock):
    worker = Worker("w", MemoryStore(clock), clock, health=HEALTH)
    await worker.ask()
    await worker.router.check_health()
    assert worker.p1.listings == 0 and worker.p2.listings == 2  # b and c saw no traffic: probed
    [row] = [row for row in await worker.router.status() if row.target == "a"]
    assert (row.health, row.probe_detail) == ("healthy", "passive")


async def test_one_prober_per_target_per_interval_across_the_fleet(clock):
    store = MemoryStore(clock)
    workers = [Worker(name, store, clock, health=HEALTH) for name in ("a", "b", "c")]
    for worker in workers:
        await worker.router.check_health()
    assert sum(w.p1.listings for w in workers) == 1
    clock.advance(10)
    for worker in workers:
        await worker.router.check_health()
    assert sum(w.p1.listings for w in workers) == 2


async def test_a_stale_verdict_is_unknown_not_healthy(clock):
    worker = Worker("w", MemoryStore(clock), clock, health=HEALTH)
    worker.p1.script_listing(Step.fail(ErrorKind.CONNECTION), Step.fail(ErrorKind.CONNECTION))
    await worker.router.check_health()
    clock.advance(10)
    await worker.router.check_health()
    assert (await worker.router.status())[0].health == "unhealthy"
    clock.advance(31)  # past 3 intervals with no probe
    assert (await worker.router.status())[0].health == "unknown"


async def test_failback_after_waits_for_good_probes_and_time(clock):
    route = {
        "retry": {"attempts": 1},
        "failback": {"mode": "after", "healthy_probes": 2, "healthy_for": "30s"},
    }
    worker = Worker("w", MemoryStore(clock), clock, health=HEALTH, route=route)
    worker.p1.script_listing(*[Step.fail(ErrorKind.CONNECTION)] * 2)
    for _ in range(2):
        await worker.router.check_health()
        clock.advance(10)
    assert outcomes(await worker.ask())[0] == ("a", "unhealthy")
    clock.advance(10)
    for _ in range(2):  # two good probes: healthy again
        await worker.router.check_health()
        clock.advance(10)
    assert outcomes(await worker.ask())[0] == ("a", "recovering")
    clock.advance(30)
    assert (await worker.ask()).target == "a"


async def test_failback_ramp_grows_the_primary_share_linearly(clock):
    route = {"retry": {"attempts": 1}, "failback": {"mode": "ramp", "ramp": "100s"}}
    worker = Worker("w", MemoryStore(clock), clock, route=route)
    runtime = worker.router._runtimes["a"]
    runtime.recovered_at = clock.monotonic()
    shares = []
    for point in (25, 50, 75):
        clock.advance(25)
        answers = [(await worker.ask()).target for _ in range(400)]
        shares.append(answers.count("a") / 400)
        assert point  # the elapsed share of the ramp
    assert shares[0] == pytest.approx(0.25, abs=0.07)
    assert shares[1] == pytest.approx(0.50, abs=0.07)
    assert shares[2] == pytest.approx(0.75, abs=0.07)
    clock.advance(30)
    assert [(await worker.ask()).target for _ in range(50)] == ["a"] * 50
