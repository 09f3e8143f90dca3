"""What a running router tells its hooks: `Router(on_event=callback)` receives each of these.

Events are frozen values, made only when a hook is installed: without one, the hot path pays
nothing. A hook runs inline and must be quick; it must not raise (what it raises is logged
and dropped, never passed to the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.resilience.breaker import BreakerTransition

if TYPE_CHECKING:
    from router.errors import ErrorKind
    from router.resilience.runtime import Health
    from router.results import Outcome

__all__ = [
    "AttemptEvent",
    "BreakerTransition",
    "Event",
    "FailoverEvent",
    "HealthEvent",
    "ReloadEvent",
    "RetryEvent",
]


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One step of a request's trail: a call, or a target skipped (its outcome says why)."""

    route: str
    target: str
    provider: str
    model: str
    outcome: Outcome | ErrorKind
    latency_s: float
    error: str | None = None
    metadata: Mapping[str, Any] | None = None  # the caller's `metadata` of the request


@dataclass(frozen=True, slots=True)
class RetryEvent:
    route: str
    target: str
    kind: ErrorKind
    delay_s: float


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """A request leaves `target` for the next candidate after a failure of `kind`."""

    route: str
    target: str
    kind: ErrorKind


@dataclass(frozen=True, slots=True)
class HealthEvent:
    target: str
    old: Health
    new: Health
    detail: str


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """A policy reload: `ok`, or refused with the issues (the old policy stays)."""

    source: str
    ok: bool
    version: int
    issues: tuple[str, ...] = ()


Event = AttemptEvent | RetryEvent | FailoverEvent | BreakerTransition | HealthEvent | ReloadEvent
