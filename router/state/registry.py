"""State store backends by name: what a policy's `state.backend` builds.

A backend is one `StoreType` entry: how to build its store from the policy's `state` section, for
one worker on a clock; whether the store is shared by a fleet (the router then joins the fleet:
breaker reports, probe leases, shared limits); and which `state` fields it cannot do without.
`register_store` adds one of the user's own; a policy may name it once it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router._registry import Registry

if TYPE_CHECKING:
    from router.clock import Clock
    from router.policy.model import StateSpec
    from router.state.base import StateStore

__all__ = ["STORES", "StoreType", "register_store"]


@dataclass(frozen=True, slots=True)
class StoreType:
    """One state store backend: `build(spec, worker, clock)` makes the store; `shared`: it serves a
    fleet of workers; `needs`: fields of the `state` section it cannot do without."""

    name: str
    build: Callable[[StateSpec, str, Clock], StateStore]
    shared: bool = False
    needs: tuple[str, ...] = ()


def _memory(spec: StateSpec, worker: str, clock: Clock) -> StateStore:
    from router.state.memory import MemoryStore  # not with the registry: a policy check needs only the names

    return MemoryStore(clock)


def _redis(spec: StateSpec, worker: str, clock: Clock) -> StateStore:
    from router.state.redis import RedisStore  # the `redis` extra, imported only when used

    assert spec.url is not None  # the entry needs it
    return RedisStore(
        spec.url.get_secret_value(),
        spec.namespace,
        worker=worker,
        socket_timeout=spec.socket_timeout,
        reconcile_interval=spec.reconcile_interval,
        clock=clock,
    )


STORES: Registry[StoreType] = Registry(
    "state backend",
    [StoreType("memory", _memory), StoreType("redis", _redis, shared=True, needs=("url",))],
)


def register_store(entry: StoreType, *, replace: bool = False) -> StoreType:
    """Make `backend: <entry.name>` a state backend of every policy validated from now on.

    A name already registered (built-in or not) is refused unless `replace`.
    """
    return STORES.register(entry, replace=replace)
