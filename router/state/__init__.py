"""Shared state for a fleet of workers: the `StateStore` protocol and its two implementations.

`MemoryStore` serves one process (the default); `RedisStore` a fleet, and imports redis-py
(the `redis` extra) only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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
    if name == "RedisStore":
        from router.state.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
