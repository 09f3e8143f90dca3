"""One worker trips on the same rule whether its state is in memory or in a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from router import ErrorKind, Router
from router.state import MemoryStore, RedisStore
from router.testing.scripted import ScriptedProvider, Step

from ..engine.conftest import USER, build_policy


async def failovers(store: Any, pattern: Callable[[int], bool], requests: int = 400) -> tuple[int, int]:
    """Requests that did not end on the primary, and its calls, when call i to it fails if `pattern(i)`."""
    p1, p2 = ScriptedProvider("p1"), ScriptedProvider("p2")
    steps = [Step.fail(ErrorKind.SERVER_ERROR, status=503) if pattern(i) else Step() for i in range(requests)]
    p1.script("a", *steps)
    router = Router(
        build_policy({"retry": {"attempts": 1}}), providers={"p1": p1, "p2": p2}, store=store, worker="w1"
    )
    moved = 0
    async with router:
        for _ in range(requests):
            moved += (await router.complete("chat", USER)).target != "a"
            await asyncio.sleep(0.001)  # let a failure report reach the store before the next request
    return moved, p1.count("a")


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_two_percent_failing_moves_only_the_failed_requests(
    backend: str, redis_store: Callable[..., RedisStore]
) -> None:
    store = MemoryStore() if backend == "memory" else redis_store("w1")
    moved, calls = await failovers(store, lambda i: i % 50 == 49)
    assert (moved, calls) == (8, 400)  # the 8 failed calls fail over; the breaker never opens


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_hard_down_primary_trips_after_fail_max_in_a_row(
    backend: str, redis_store: Callable[..., RedisStore]
) -> None:
    store = MemoryStore() if backend == "memory" else redis_store("w1")
    moved, calls = await failovers(store, lambda i: True, requests=50)
    assert (moved, calls) == (50, 5)  # the default fail_max
