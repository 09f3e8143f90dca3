"""A hung Redis never costs a request more than `state.socket_timeout`, with fleet limits and a budget.

One worker, a dedicated `redis-server` that the test freezes (SIGSTOP: connections stay open and
nothing answers) and thaws. The provider answers at once, so a request's time is the router's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Policy, Router
from router.testing.scripted import ScriptedProvider

from ..redis_support import DedicatedRedis

SOCKET_TIMEOUT = 0.25
USER = [{"role": "user", "content": "hi"}]


def policy(url: str, namespace: str) -> dict[str, Any]:
    """Target `a` with fleet rpm and tpm and a budget on its tier, route `chat`."""
    return {
        "providers": {
            "p": {
                "type": "openai_compatible",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "unused",
                "limits": {"rpm": 600_000, "tpm": 600_000_000},
            }
        },
        "targets": {"a": {"provider": "p", "model": "a", "price": {"input": 1, "output": 2}, "tier": "t"}},
        "routes": {"chat": {"targets": ["a"], "retry": {"attempts": 1}}},
        "budgets": {"t-daily": {"tier": "t", "usd": 1_000_000, "per": "day"}},
        "state": {"backend": "redis", "url": url, "namespace": namespace, "socket_timeout": "250ms"},
    }


@pytest.fixture
async def router(dedicated_redis: DedicatedRedis) -> AsyncIterator[Router]:
    data = policy(dedicated_redis.url, f"hung:{uuid.uuid4().hex[:8]}")
    r = Router(Policy.model_validate(data), providers={"p": ScriptedProvider("p")}, worker="w1")
    yield r
    dedicated_redis.thaw()
    await r.aclose()


async def timed(router: Router, n: int, pause: float = 0.002) -> list[float]:
    """`n` requests one after another; each one's duration."""
    durations = []
    for _ in range(n):
        started = time.perf_counter()
        result = await router.complete("chat", USER)
        durations.append(time.perf_counter() - started)
        assert result.target == "a", result.attempts
        await asyncio.sleep(pause)  # the background (lease refills, the listener) gets its turns
    return durations


async def test_requests_on_a_hung_redis_cost_no_more_than_the_socket_timeout(
    router: Router, dedicated_redis: DedicatedRedis
) -> None:
    healthy = await timed(router, 300)
    dedicated_redis.freeze()
    hung = await timed(router, 1000)  # ~3 s: past the deadline of every store call under way
    dedicated_redis.thaw()
    after = await timed(router, 300)
    worst = max(hung)
    ms = {
        name: max(durations) * 1e3
        for name, durations in (("healthy", healthy), ("hung", hung), ("after", after))
    }
    print("\nslowest request: " + ", ".join(f"{name} {value:.2f} ms" for name, value in ms.items()))
    assert worst <= SOCKET_TIMEOUT
    # And in fact nothing on the request path waited for Redis at all.
    assert sorted(hung)[-5] < 0.05


async def test_a_router_started_on_a_hung_redis_serves_its_first_request_within_the_socket_timeout(
    router: Router, dedicated_redis: DedicatedRedis
) -> None:
    dedicated_redis.freeze()
    first = await timed(router, 1)
    rest = await timed(router, 50)
    print(f"\nfirst request {first[0] * 1e3:.0f} ms, then max {max(rest) * 1e3:.2f} ms")
    assert first[0] <= SOCKET_TIMEOUT + 0.05
    assert max(rest) <= SOCKET_TIMEOUT
