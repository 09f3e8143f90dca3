"""The fleet's rules with real worker processes sharing one real Redis.

`test_fleet_in_process.py` checks the rules on one MemoryStore in virtual time; here the same
scenarios run across spawned worker processes (`workers.py`), each with its own `Router` on
the Redis backend and `openai_compatible` providers pointed at one `FakeUpstream` in this
process. The upstream's request log is the witness of who called what, and when.

Without Redis on 127.0.0.1:6379 these tests skip locally and fail when `CI` is set.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import redis

from router.testing import FakeUpstream, Fault

from ..redis_support import DedicatedRedis
from .conftest import FLEET_SIZE
from .workers import Fleet, WorkerProcess, eventually

# -- fixtures ---------------------------------------------------------------------------------


def fresh_namespace() -> str:
    return f"router-test:mp:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key namespace of this test's own on the shared Redis, deleted afterwards."""
    ns = fresh_namespace()
    yield ns
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- helpers ------------------------------------------------------------------------------------


def policy(
    upstream: FakeUpstream,
    url: str | None,
    namespace: str,
    *,
    primary: str = "primary",
    breaker: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    route: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Route `chat`: target `primary` (provider p1, model `primary`) then `backup` (p2).

    `primary` names the primary's model: a model per worker lets the upstream log tell the
    workers apart while the breaker (per target) stays one for the fleet. `url=None`: no
    shared state.
    """
    provider = {
        "type": "openai_compatible",
        "base_url": upstream.base_url,
        "api_key": "sk-fleet-test-0123456789",
    }
    data: dict[str, Any] = {
        "providers": {
            "p1": {
                **provider,
                "breaker": {"fail_max": 2, "reset_timeout": "60s", "window": "10s", **(breaker or {})},
                **({"limits": limits} if limits else {}),
            },
            "p2": {**provider, "breaker": {"fail_max": 1000}},
        },
        "targets": {
            "primary": {"provider": "p1", "model": primary},
            "backup": {"provider": "p2", "model": "backup"},
        },
        "routes": {"chat": {"targets": ["primary", "backup"], "retry": {"attempts": 1}, **(route or {})}},
    }
    if url is not None:
        data["state"] = {"backend": "redis", "url": url, "namespace": namespace}
    if health is not None:
        data["health"] = health
    return data


def per_worker(fleet: Fleet, make: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """A policy for each worker whose primary model is `primary-<worker>`."""
    return [make(f"primary-{worker.name}") for worker in fleet.workers]


def to_wall(upstream: FakeUpstream) -> Callable[[float], float]:
    """Maps the upstream log's `at` (monotonic since its start) to `time.time()`."""
    offset = time.time() - upstream.elapsed()
    return lambda at: at + offset


def chats(upstream: FakeUpstream, prefix: str = "") -> list[Any]:
    return [r for r in upstream.log if r.method == "POST" and r.model.startswith(prefix)]


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def opened(event: dict[str, Any]) -> bool:
    return bool(event["target"] == "primary" and event["new"] == "open")


def closed(event: dict[str, Any]) -> bool:
    return bool(event["target"] == "primary" and event["new"] == "closed")


def of_generation(
    match: Callable[[dict[str, Any]], bool], generation: int
) -> Callable[[dict[str, Any]], bool]:
    return lambda event: match(event) and event["generation"] == generation


def logged(worker: WorkerProcess, text: str) -> bool:
    return any(text in line for line in worker.call("logs"))


def answered_by(worker: WorkerProcess, target: str) -> bool:
    return bool(worker.call("ask")[0]["target"] == target)


# -- a. a trip reaches every worker ------------------------------------------------------------


TRIPS = 10


def test_a_trip_reaches_every_worker_within_50ms_and_nobody_calls_the_primary_after_it(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    fleet.build(
        per_worker(fleet, lambda model: policy(upstream, redis_url, namespace, primary=model)), namespace
    )
    assert {r["target"] for rs in fleet.all("ask") for r in rs} == {"primary"}  # it works for everyone
    upstream.add_fault("primary-w1", Fault.unavailable())  # ... but not for worker 1

    delays: list[float] = []
    for trip in range(TRIPS):
        answered = fleet[0].call("ask", n=2)  # fail_max 2: worker 1 alone trips it
        assert [r["target"] for r in answered] == ["backup", "backup"]
        generation = 2 * trip + 1  # each round: open, then closed
        seen = fleet.wait_events(of_generation(opened, generation), FLEET_SIZE)
        tripped_at = next(e["time"] for e in seen if e["worker"] == "w1")
        delays += [e["time"] - tripped_at for e in seen if e["worker"] != "w1"]

        calls_before = len(chats(upstream, "primary"))
        for results in fleet.all("ask", n=3):
            for result in results:
                assert result["target"] == "backup"
                assert result["attempts"][0] == ("primary", "breaker_open")
        assert len(chats(upstream, "primary")) == calls_before  # skipped without a call

        assert fleet[0].call("close_breaker", target="primary") == "closed"
        fleet.wait_events(of_generation(closed, generation + 1), FLEET_SIZE)

    # The only primary calls after the first round: worker 1's own failures that tripped it.
    calls = chats(upstream, "primary")
    assert [r.model for r in calls[FLEET_SIZE:]] == ["primary-w1"] * 2 * TRIPS
    p50, p99 = statistics.median(delays), nearest_rank(delays, 0.99)
    print(f"\ntrip propagation, {len(delays)} observations: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
    assert p99 <= 0.050, sorted(delays)


# -- b. one probe for the whole fleet ----------------------------------------------------------


def test_b_one_worker_probes_for_the_fleet_and_its_success_brings_everyone_back(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    breaker = {"reset_timeout": "300ms"}
    fleet.build(
        per_worker(
            fleet, lambda model: policy(upstream, redis_url, namespace, primary=model, breaker=breaker)
        ),
        namespace,
    )
    for worker in fleet:
        upstream.add_fault(f"primary-{worker.name}", Fault.unavailable())
    # One request at a time per worker: the holder's next request comes after the verdict has
    # landed (see the next test for what happens when it comes sooner).
    fleet.all("traffic", pause=0.01)
    opens = {e["worker"]: e["time"] for e in fleet.wait_events(opened, FLEET_SIZE)}
    upstream.clear_faults()  # healthy again: the probe will succeed

    closes = {e["worker"]: e["time"] for e in fleet.wait_events(closed, FLEET_SIZE, within=5.0)}
    wall = to_wall(upstream)

    def back_on_primary() -> bool:
        after = [r for r in chats(upstream, "primary") if wall(r.at) > max(closes.values())]
        return all(sum(r.model == f"primary-{w.name}" for r in after) >= 3 for w in fleet)

    eventually(back_on_primary, within=5.0)
    records = fleet.all("stop_traffic")

    # Between a worker's own sight of the trip and the fleet's first close, the only call to
    # the primary from any worker is the probe. (Requests a worker sent before it saw the trip
    # may reach the upstream late, so the count is taken on the workers' side.)
    first_close = min(closes.values())
    probes = [
        (worker.name, r)
        for worker, results in zip(fleet, records, strict=True)
        for r in results
        if opens[worker.name] < r["start"] < first_close and r["attempts"][0][1] != "breaker_open"
    ]
    assert len(probes) == 1, [
        (w, r["start"] - first_close, r["end"] - first_close, r["attempts"]) for w, r in probes
    ]
    assert probes[0][1]["attempts"][0] == ("primary", "ok")
    for worker, results in zip(fleet, records, strict=True):
        assert all(r["error"] is None for r in results)
        after_close = [r for r in results if r["start"] > closes[worker.name]]
        assert after_close and all(r["target"] == "primary" for r in after_close), worker.name


def test_b_the_probe_holder_sends_one_probe_and_waits_for_its_verdict(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    """After a successful probe the holder keeps its permit until the fleet's verdict lands:
    `Fleet.settle_probe` only spawns the store call, and until the closed record is applied
    `admit()` must not take the next request as a second probe. Two requests in a row on the
    holder, with no loop turn between them, would show it.
    """
    breaker = {"reset_timeout": "300ms"}
    fleet.build(
        per_worker(
            fleet, lambda model: policy(upstream, redis_url, namespace, primary=model, breaker=breaker)
        ),
        namespace,
    )
    upstream.add_fault("primary-w1", Fault.unavailable(), times=2)
    fleet[0].call("ask", n=2)
    fleet.wait_events(opened, FLEET_SIZE)
    time.sleep(0.35)  # past the reset timeout: a request now takes the probe lease (and skips)
    fleet[0].call("ask")
    fleet.wait_events(lambda e: e["new"] == "half-open", FLEET_SIZE, within=3.0)  # one holds the lease

    trails = fleet.all("ask", n=2)
    first_close = min(e["time"] for e in fleet.wait_events(closed, FLEET_SIZE))
    before_the_verdict = [
        r for results in trails for r in results
        if r["start"] < first_close and r["attempts"][0][1] != "breaker_open"
    ]  # fmt: skip
    assert len(before_the_verdict) == 1, before_the_verdict


# -- c. one health prober per target per interval ----------------------------------------------


def test_c_health_probes_come_once_per_target_per_interval_across_the_fleet(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    interval, intervals, targets = 0.2, 8, 2
    health = {"enabled": True, "interval": f"{interval * 1000:g}ms"}
    fleet.build([policy(upstream, redis_url, namespace, health=health)] * FLEET_SIZE, namespace)
    start = upstream.elapsed() + interval  # past the first round, which every worker starts at once
    end = start + intervals * interval
    eventually(lambda: upstream.elapsed() >= end, within=end + 1.0, step=0.05)

    listings = [r for r in upstream.log if r.method == "GET" and start <= r.at < end]
    expected = targets * intervals
    print(f"\n{len(listings)} models listings over {intervals} intervals for {targets} targets")
    # Without the fleet's lease every worker would probe every target: 4x as many.
    assert 0.6 * expected <= len(listings) <= 1.4 * expected


# -- d. failback ramp ---------------------------------------------------------------------------


def test_d_after_recovery_the_primary_share_ramps_up_linearly(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    ramp = 2.0
    route = {"failback": {"mode": "ramp", "ramp": f"{ramp:g}s"}}
    breaker = {"reset_timeout": "300ms"}
    fleet.build(
        per_worker(
            fleet,
            lambda model: policy(upstream, redis_url, namespace, primary=model, breaker=breaker, route=route),
        ),
        namespace,
    )
    for worker in fleet:
        upstream.add_fault(f"primary-{worker.name}", Fault.unavailable())
    fleet.all("traffic", pause=0.01)
    fleet.wait_events(opened, FLEET_SIZE)
    upstream.clear_faults()
    recovered = min(e["time"] for e in fleet.wait_events(closed, FLEET_SIZE, within=5.0))
    wall = to_wall(upstream)
    eventually(lambda: wall(upstream.elapsed()) > recovered + ramp + 0.3, within=ramp + 2.0, step=0.05)
    records = fleet.all("stop_traffic")
    assert all(r["error"] is None for results in records for r in results)

    thirds: list[float] = []
    for k in range(3):
        low, high = recovered + k * ramp / 3, recovered + (k + 1) * ramp / 3
        window = [r for r in chats(upstream) if low <= wall(r.at) < high]
        thirds.append(sum(r.model.startswith("primary") for r in window) / max(1, len(window)))
    after = [r for r in chats(upstream) if wall(r.at) >= recovered + ramp + 0.05]
    print(f"\nprimary share by third of the ramp: {[round(s, 2) for s in thirds]} (ideal 0.17, 0.5, 0.83)")
    assert thirds[0] < thirds[1] < thirds[2]
    assert thirds[0] < 0.4 and thirds[2] > 0.6
    assert after and all(r.model.startswith("primary") for r in after)  # the ramp is over


# -- e. cluster-wide RPM -------------------------------------------------------------------------


def test_e_rpm_is_one_token_bucket_for_the_whole_fleet(
    fleet: Fleet, upstream: FakeUpstream, redis_url: str, namespace: str
) -> None:
    rpm = 60  # a bucket of 60 that refills at 1 per second
    limits = {"rpm": rpm}

    def hammer(url: str | None, until: Callable[[], bool]) -> tuple[float, list[list[dict[str, Any]]]]:
        fleet.build([policy(upstream, url, namespace, limits=limits)] * FLEET_SIZE, f"{namespace}:{url}")
        upstream.reset_log()
        started = time.monotonic()
        fleet.all("traffic", concurrency=4, deadline=0.3)
        eventually(until, within=6.0, step=0.02)
        records = fleet.all("stop_traffic")
        return time.monotonic() - started, records

    def primary_calls() -> int:
        return upstream.count("primary")

    # Shared: past the burst, hammer on for a while longer.
    burst_spent: list[float] = []

    def spent_and_then_some() -> bool:
        if not burst_spent and primary_calls() >= rpm:
            burst_spent.append(time.monotonic())
        return bool(burst_spent) and time.monotonic() - burst_spent[0] > 1.5

    elapsed, records = hammer(redis_url, spent_and_then_some)
    allowed = rpm + elapsed * rpm / 60
    served = primary_calls()
    print(f"\nshared bucket: {served} primary calls in {elapsed:.2f} s (bucket allows {allowed:.1f})")
    assert served <= math.floor(allowed)
    # A request may spend its whole deadline waiting for a token and then time out on the
    # primary; nothing else may go wrong.
    errors = [r for results in records for r in results if r["error"] is not None]
    assert all(r["attempts"] == [("primary", "timeout")] for r in errors), errors
    for results in records:  # each worker alone asked for more than the fleet may have
        wanted = sum(1 for r in results if r["attempts"] and r["attempts"][0][0] == "primary")
        assert wanted > allowed

    # The same fleet without shared state: each process spends its own bucket.
    elapsed, records = hammer(None, lambda: primary_calls() > 2 * allowed)
    print(f"per-process buckets: {primary_calls()} primary calls in {elapsed:.2f} s")
    assert primary_calls() > 2 * (rpm + elapsed * rpm / 60)


# -- f. Redis goes away and comes back -----------------------------------------------------------


def _serve_through_an_outage(
    fleet: Fleet, upstream: FakeUpstream, server: DedicatedRedis, namespace: str
) -> list[list[dict[str, Any]]]:
    """Two workers serve traffic; Redis is killed; the primary starts failing; each worker trips
    its own breaker and carries on. Returns every request's result so far (traffic stopped)."""
    breaker = {"fail_max": 3, "reset_timeout": "300ms"}
    fleet.build(
        [policy(upstream, server.url, namespace, primary=f"primary-w{i}", breaker=breaker) for i in (1, 2)],
        namespace,
    )
    fleet.all("traffic", pause=0.005)
    eventually(lambda: upstream.count() >= 20)
    server.kill()
    for i in (1, 2):
        upstream.add_fault(f"primary-w{i}", Fault.unavailable())
    # Local trips: the fleet cannot be told, so each worker opens its own breaker.
    fleet.wait_events(lambda e: opened(e) and not e["remote"], 2, within=5.0)
    count = upstream.count()
    eventually(lambda: upstream.count() >= count + 100)  # plenty of calls with Redis gone
    return fleet.all("stop_traffic")


def test_f_with_redis_gone_every_request_still_succeeds_and_each_worker_says_so_once(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis
) -> None:
    records = _serve_through_an_outage(fleet, upstream, dedicated_redis, fresh_namespace())
    assert sum(len(results) for results in records) > 100
    failures = [r for results in records for r in results if r["error"] is not None]
    assert failures == []
    for worker, results in zip(fleet, records, strict=True):
        failed_primary = sum(1 for r in results if ("primary", "server_error") in r["attempts"])
        assert failed_primary >= 3  # several failures the fleet could not be told about ...
        lines = worker.call("logs")
        unreachable = [line for line in lines if "shared state unreachable" in line]
        assert len(unreachable) == 1, lines  # ... and one line about it
        assert sum(line.startswith("WARNING") for line in lines) <= 3, lines


def test_f_after_redis_restarts_the_workers_resync_and_a_trip_propagates_again(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis
) -> None:
    """Once Redis answers again every worker follows the fleet again (`Fleet._back` on any
    answer or record, the listener's reconcile included), so a trip propagates once more.
    """
    namespace = fresh_namespace()
    _serve_through_an_outage(fleet, upstream, dedicated_redis, namespace)
    dedicated_redis.start()  # same port, empty
    upstream.clear_faults()

    for worker in fleet:
        store_back = partial(logged, worker, "redis back")
        eventually(store_back, within=5.0, step=0.05)
        # Its local breaker, asked again, probes and closes (the fault is gone).
        eventually(partial(answered_by, worker, "primary"), within=5.0, step=0.05)
    # A worker hears trips once its listener is subscribed again, which its reconnect backoff (up to 2 s)
    # may delay past its first answer from Redis: the trip below waits for both to listen.
    listening = redis.Redis.from_url(dedicated_redis.url)
    try:
        channel = f"{namespace}:breakers"
        eventually(lambda: listening.pubsub_numsub(channel)[0][1] == 2, within=5.0, step=0.05)
    finally:
        listening.close()

    upstream.add_fault("primary-w1", Fault.unavailable())
    tripping = time.time()  # earlier opens (a breaker written back to the empty store) do not count
    tripped = fleet[0].call("ask", n=3)  # fail_max 3
    assert all(r["target"] == "backup" for r in tripped)
    fleet.wait_events(
        lambda e: opened(e) and e["worker"] == "w2" and e["remote"] and e["time"] > tripping, 1, within=2.0
    )
    assert fleet[1].call("ask")[0]["attempts"][0] == ("primary", "breaker_open")
    for worker in fleet:
        lines = worker.call("logs")
        assert sum("shared state reachable again" in line for line in lines) == 1, lines


# -- g. Redis restarted empty -----------------------------------------------------------------


def test_g_a_redis_restarted_empty_keeps_the_fleets_breakers_on(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis
) -> None:
    """Generations start over in an empty Redis (a new epoch): workers that hold generation 6
    must still follow the new records, so a second outage trips the fleet's breaker again."""
    namespace = fresh_namespace()
    breaker = {"fail_max": 2, "reset_timeout": "300ms", "max_reset_timeout": "300ms"}
    fleet.build(
        [policy(upstream, dedicated_redis.url, namespace, breaker=breaker) for _ in range(2)], namespace
    )
    upstream.add_fault("primary", Fault.unavailable())
    fleet.all("traffic", pause=0.01)
    # Trips and failed probes push the fleet's generation up; then the primary heals.
    fleet.wait_events(lambda e: opened(e) and e["generation"] >= 5, 2, within=10.0)
    upstream.clear_faults()
    fleet.wait_events(closed, 2, within=5.0)

    dedicated_redis.kill()
    dedicated_redis.start()  # same port, empty
    for worker in fleet:
        eventually(partial(logged, worker, "redis back"), within=5.0, step=0.05)
    restarted = time.time()
    upstream.add_fault("primary", Fault.unavailable())
    seen = len(chats(upstream, "primary"))
    # The fleet's breaker works in the new epoch: the trip reaches the other worker.
    fleet.wait_events(lambda e: opened(e) and e["remote"] and e["time"] > restarted, 2, within=3.0)
    time.sleep(2.0)
    records = fleet.all("stop_traffic")

    calls = len(chats(upstream, "primary")) - seen
    # fail_max calls per trip and one probe per 300 ms open period for the fleet: a few dozen
    # at most, against hundreds of requests (before: every request went to the dead primary).
    assert sum(len(results) for results in records) > 200
    assert calls < 40, calls
    assert all(r["error"] is None for results in records for r in results)
