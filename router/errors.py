"""Every error the router raises, under one base class.

    RouterError
    ├── PolicyError          a policy file that does not load, validate or compile
    ├── ProviderError        one provider call failed; `kind` says how
    │   └── StreamBroken     a stream failed after output began; carries what was received
    ├── AllTargetsFailed     no candidate answered; carries the attempt trail
    ├── InvalidRequest       a call the router refuses before any call (unknown route, bad control)
    ├── BudgetExceeded       a budget whose policy says `when_spent: raise` is spent
    └── StoreUnavailable     the shared state store did not answer in time

Messages never contain secrets: provider errors are summarised from status and kind, and
policy errors name variables and fields, never their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.results import Attempt

__all__ = [
    "AllTargetsFailed",
    "BudgetExceeded",
    "ErrorKind",
    "InvalidRequest",
    "PolicyError",
    "PolicyIssue",
    "ProviderError",
    "RouterError",
    "StoreUnavailable",
    "StreamBroken",
]


class ErrorKind(StrEnum):
    """The small set of ways a provider call fails; each carries its default handling.

    A route's `retry.on` and `failover.on` default to the kinds `retried_by_default` and
    `fails_over_by_default`; a kind that `blames_request` is never retried and never counts
    against a breaker, whatever the policy says.
    """

    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    AUTH = "auth"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    BAD_REQUEST = "bad_request"
    STREAM_BROKEN = "stream_broken"

    @property
    def retried_by_default(self) -> bool:
        """Retried on the same target unless the route's `retry.on` says otherwise."""
        return _HANDLING[self].retried

    @property
    def fails_over_by_default(self) -> bool:
        """Moves on to the next target unless the route's `failover.on` says otherwise."""
        return _HANDLING[self].fails_over

    @property
    def blames_request(self) -> bool:
        """The request itself is at fault: no retry on the same target can cure it."""
        return _HANDLING[self].blames_request

    @property
    def counts_against_breaker(self) -> bool:
        """Does it say the target is failing? A fault of the request says nothing about the target."""
        return not _HANDLING[self].blames_request


@dataclass(frozen=True, slots=True)
class _Handling:
    retried: bool = False
    fails_over: bool = False
    blames_request: bool = False


_HANDLING = {
    ErrorKind.RATE_LIMITED: _Handling(retried=True, fails_over=True),
    ErrorKind.TIMEOUT: _Handling(fails_over=True),
    ErrorKind.CONNECTION: _Handling(retried=True, fails_over=True),
    ErrorKind.SERVER_ERROR: _Handling(retried=True, fails_over=True),
    ErrorKind.AUTH: _Handling(fails_over=True),
    # Only to a target with a larger window (the engine skips the others).
    ErrorKind.CONTEXT_LENGTH: _Handling(fails_over=True, blames_request=True),
    ErrorKind.CONTENT_FILTER: _Handling(blames_request=True),
    ErrorKind.BAD_REQUEST: _Handling(blames_request=True),
    ErrorKind.STREAM_BROKEN: _Handling(fails_over=True),
}


class RouterError(Exception):
    """Base class of every error raised by `router`."""


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy, located in its source file."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {self.message}{where}"


class PolicyError(RouterError):
    """A policy that cannot be loaded: every issue names file, line, column and field."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues: tuple[PolicyIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ProviderError(RouterError):
    """One call to one provider failed.

    `retry_after` is the delay the provider asked for, in seconds, when it said so.
    `retryable` is the kind's default; the route's policy has the last word.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str = "",
        target: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.provider = provider
        self.target = target
        self.status = status
        self.retry_after = retry_after
        self.attempts: tuple[Attempt, ...] = ()
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.kind.retried_by_default

    def __str__(self) -> str:
        where = f"{self.target or self.provider}: " if (self.target or self.provider) else ""
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{where}{self.kind}{status}: {self.message}"


class StreamBroken(ProviderError):
    """A stream was cut, stalled or ended without a finish after output began."""

    def __init__(self, message: str, *, received: str = "", provider: str = "", target: str = "") -> None:
        super().__init__(ErrorKind.STREAM_BROKEN, message, provider=provider, target=target)
        self.received = received


class AllTargetsFailed(RouterError):
    """No candidate of the route produced an answer; `attempts` says what each one did."""

    def __init__(self, route: str, attempts: Sequence[Attempt], reason: str = "") -> None:
        self.route = route
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        trail = "; ".join(f"{a.target}: {a.outcome}" for a in self.attempts) or "no candidate fits"
        suffix = f" ({reason})" if reason else ""
        super().__init__(f"route {route!r}: all targets failed{suffix}: {trail}")


class InvalidRequest(RouterError, ValueError):
    """The caller asked for something the policy cannot serve (an unknown route or target, a control
    value out of range); raised before any call, so it never counts against a target."""


class BudgetExceeded(RouterError):
    """The named budget is spent and its policy says to refuse rather than shift traffic."""

    def __init__(self, budget: str, route: str, usd: float, per: str) -> None:
        self.budget = budget
        self.route = route
        super().__init__(f"route {route!r}: budget {budget!r} (${usd:g} per {per}) is spent")


class StoreUnavailable(RouterError):
    """The shared state store did not answer in time; the caller carries on with local state."""
