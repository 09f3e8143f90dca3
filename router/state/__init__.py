"""Shared state for a fleet of workers: the `StateStore` protocol and its two implementations.

`MemoryStore` serves one process (the default); `RedisStore` a fleet, and imports redis-py
(the `redis` extra) only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.state.base import (
        BreakerRecord,
        Change,
        DrainRecord,
        Grant,
        HealthRecord,
        Snapshot,
        StateStore,
        StoreUnavailable,
    )
    from router.state.memory import MemoryStore
    from router.state.redis import RedisStore

__all__ = [
    "BreakerRecord",
    "Change",
    "DrainRecord",
    "Grant",
    "HealthRecord",
    "MemoryStore",
    "RedisStore",
    "Snapshot",
    "StateStore",
    "StoreUnavailable",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: a policy check that only reads the names of the backends
    # (`router.state.registry`) loads neither the stores nor what they import (asyncio, the breaker).
    if name == "MemoryStore":
        from router.state.memory import MemoryStore

        return MemoryStore
    if name == "RedisStore":
        from router.state.redis import RedisStore

        return RedisStore
    if name in __all__:
        from router.state import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
