"""Fleet budgets and limits with real worker processes on one real Redis (`router._quota`).

Four workers (`workers.py`) answer through a `FakeUpstream` in this process: a premium target
whose answers are long (no `max_tokens`: the reservations must learn their length) and a cheap
backup. The premium tier has a budget for the fleet; what the workers spent on it is summed
from every answer's cost. A dedicated Redis is killed, or frozen, half-way.

Without Redis on 127.0.0.1 these tests skip locally and fail when `CI` is set.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from router.testing import FakeUpstream, Fault

from ..redis_support import DedicatedRedis
from .conftest import FLEET_SIZE
from .workers import Fleet, eventually

PRICE = {"input": 1.0, "output": 10.0}  # USD per million tokens
WORDS = [1600, 2000, 2400, 2800]  # each worker's answers: about 2 000 to 3 500 output tokens
ANSWERS_IN_BUDGET = 160
SOCKET_TIMEOUT = 0.25


def policy(
    upstream: FakeUpstream, url: str, namespace: str, worker: int, *, usd: float, limits: bool = False
) -> dict[str, Any]:
    """Route `chat`: `primary` (premium tier, model `primary-w<worker>`) then `backup` (economy)."""
    provider = {
        "type": "openai_compatible",
        "base_url": upstream.base_url,
        "api_key": "sk-lease-test-0123456789",
    }
    fleet_limits = {"limits": {"rpm": 600_000, "tpm": 600_000_000}} if limits else {}
    return {
        "providers": {"p1": {**provider, **fleet_limits}, "p2": provider},
        "targets": {
            "primary": {"provider": "p1", "model": f"primary-w{worker}", "price": PRICE, "tier": "premium"},
            "backup": {"provider": "p2", "model": "backup", "price": {"input": 0.01, "output": 0.01}},
        },
        "routes": {"chat": {"targets": ["primary", "backup"], "retry": {"attempts": 1}}},
        "budgets": {"premium-daily": {"tier": "premium", "usd": usd, "per": "day"}},
        "state": {"backend": "redis", "url": url, "namespace": namespace},
    }


def budget_for(upstream: FakeUpstream) -> float:
    """ANSWERS_IN_BUDGET answers' worth, the long ones of every worker alike."""
    for worker, words in enumerate(WORDS, start=1):
        upstream.set_reply(f"primary-w{worker}", "word " * words)
    mean_tokens = sum(WORDS) / len(WORDS) * 5 / 4  # 4 characters a token
    return ANSWERS_IN_BUDGET * mean_tokens * PRICE["output"] / 1e6


def premium_calls(upstream: FakeUpstream) -> int:
    return sum(upstream.count(f"primary-w{worker}") for worker in range(1, FLEET_SIZE + 1))


def spend(
    fleet: Fleet, upstream: FakeUpstream, url: str, usd: float, *, midway: Any = None, at: float = 0.5
) -> tuple[float, list[dict[str, Any]]]:
    """Traffic on every worker until the budget has long been spent (or `midway()`, run once `at` of
    it is, stops the fleet from knowing); the premium tier's spending over its allowance for the run."""
    upstream.add_fault("*", Fault.latency(0.1, 0.05))
    base = premium_calls(upstream)
    namespace = f"lease-mp:{uuid.uuid4().hex[:8]}"
    fleet.build([policy(upstream, url, namespace, w, usd=usd) for w in range(1, FLEET_SIZE + 1)], namespace)
    started = time.monotonic()
    fleet.all("traffic", concurrency=4)
    if midway is None:
        eventually(lambda: premium_calls(upstream) - base >= ANSWERS_IN_BUDGET, within=20.0, step=0.05)
    else:
        eventually(lambda: premium_calls(upstream) - base >= at * ANSWERS_IN_BUDGET, within=20.0, step=0.01)
        midway()  # from here the fleet cannot be told what it spends: it may use its leases and shares
        time.sleep(1.0)
    time.sleep(2.0)  # past the budget: every worker asks the premium tier again and again
    records = [r for results in fleet.all("stop_traffic", timeout=30) for r in results]
    elapsed = time.monotonic() - started
    allowed = usd * (1 + elapsed / 86400)
    spent = sum(r["cost"] for r in records if r["target"] == "primary")
    return spent / allowed, records


def test_four_workers_on_long_answers_spend_no_more_than_five_percent_over_their_budget(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis
) -> None:
    usd = budget_for(upstream)
    ratio, records = spend(fleet, upstream, dedicated_redis.url, usd)
    print(f"\nRedis up: {FLEET_SIZE} workers spent {ratio:.3f}x the budget over {len(records)} requests")
    assert all(r["error"] is None for r in records)
    assert sum(r["target"] == "backup" for r in records) > 100  # the budget was spent, and then some
    assert 0.9 <= ratio <= 1.05


@pytest.mark.parametrize("at", [0.5, 0.95])
def test_with_redis_killed_mid_run_four_workers_spend_no_more_than_a_quarter_over_their_budget(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis, at: float
) -> None:
    usd = budget_for(upstream)
    ratio, records = spend(fleet, upstream, dedicated_redis.url, usd, midway=dedicated_redis.kill, at=at)
    print(f"\nRedis killed at {at:.0%} of the budget: {FLEET_SIZE} workers spent {ratio:.3f}x the budget")
    assert all(r["error"] is None for r in records)
    assert ratio <= 1.25


def test_a_hung_redis_costs_the_fleets_requests_at_most_the_socket_timeout(
    fleet: Fleet, upstream: FakeUpstream, dedicated_redis: DedicatedRedis
) -> None:
    """Fleet rpm, tpm and a budget on the primary; Redis frozen for 2 s in the middle of the traffic."""
    upstream.add_fault("*", Fault.latency(0.02))
    namespace, url = f"lease-mp:{uuid.uuid4().hex[:8]}", dedicated_redis.url
    fleet.build(
        [policy(upstream, url, namespace, w, usd=1e6, limits=True) for w in range(1, FLEET_SIZE + 1)],
        namespace,
    )
    fleet.all("traffic", concurrency=2, pause=0.005)
    time.sleep(1.5)
    frozen = time.time()
    dedicated_redis.freeze()
    time.sleep(2.0)
    thawed = time.time()
    dedicated_redis.thaw()
    time.sleep(1.0)
    records = [r for results in fleet.all("stop_traffic", timeout=30) for r in results]
    assert all(r["error"] is None and r["target"] == "primary" for r in records)

    def took(phase: list[dict[str, Any]]) -> list[float]:
        return sorted(r["end"] - r["start"] for r in phase)

    healthy = took([r for r in records if r["end"] < frozen])
    hung = took([r for r in records if frozen <= r["start"] and r["end"] <= thawed])
    p99 = {name: d[int(0.99 * (len(d) - 1))] for name, d in (("healthy", healthy), ("hung", hung))}
    ms = {
        "p99 hung": p99["hung"],
        "max hung": hung[-1],
        "p99 healthy": p99["healthy"],
        "max healthy": healthy[-1],
    }
    print(
        f"\n{len(hung)} requests with Redis frozen: "
        + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in ms.items())
    )
    assert len(hung) > 100
    assert hung[-1] <= healthy[-1] + SOCKET_TIMEOUT
    assert p99["hung"] <= 2 * p99["healthy"] + 0.01
