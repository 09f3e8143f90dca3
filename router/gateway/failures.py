"""What the gateway answers when a request fails: one `Failure` (status, kind, message) per cause,
rendered by each wire into its own error JSON.

`Refusal` is the gateway's own refusal (no key, a route the key may not use, a body that is not
JSON, ...): raised by the request's checks, answered at once, never seen outside the gateway.
Messages never quote a key: a 401 or 403 says what is missing or refused, not which keys exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.errors import (
    AllTargetsFailed,
    BudgetExceeded,
    ErrorKind,
    InvalidRequest,
    ProviderError,
    RouterError,
)
from router.results import Outcome

__all__ = ["Failure", "Refusal", "failure_of"]


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer: HTTP `status`, `kind` (an `ErrorKind`, an outcome or a gateway reason), a message."""

    status: int
    kind: str
    message: str
    retry_after: float | None = None


class Refusal(Exception):
    """The gateway refuses the request before it reaches the router."""

    def __init__(self, status: int, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.failure = Failure(status, kind, message, retry_after)


# A candidate that answered 429 or whose limiter could not admit the call: rate limited either way.
_LIMITED = frozenset({ErrorKind.RATE_LIMITED, Outcome.LIMITED})
_CALLERS_FAULT = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_LENGTH, ErrorKind.CONTENT_FILTER})
# Skipped because of what the request asks (tools, a window): no target of the route could ever serve it.
_MISFITS = frozenset({Outcome.UNSUPPORTED, Outcome.WINDOW_TOO_SMALL})


def failure_of(error: BaseException) -> Failure | None:
    """The answer for an error a request raised; None for one neither the caller's nor a target's (a bug)."""
    if isinstance(error, Refusal):
        return error.failure
    if isinstance(error, AllTargetsFailed):
        return _all_failed(error)
    if isinstance(error, ProviderError):
        return _provider(error)
    if isinstance(error, BudgetExceeded):
        return Failure(429, "budget_exceeded", str(error))
    if isinstance(error, InvalidRequest | TypeError | ValueError):
        # Raised before any call: an option the router does not take, a control out of range.
        return Failure(400, "invalid_request", str(error))
    if isinstance(error, RouterError):
        return Failure(400, "invalid_request", str(error))
    return None


def _all_failed(error: AllTargetsFailed) -> Failure:
    outcomes = [attempt.outcome for attempt in error.attempts]
    calls = [outcome for outcome in outcomes if isinstance(outcome, ErrorKind)]
    if outcomes and all(outcome in _LIMITED for outcome in outcomes):
        return Failure(429, ErrorKind.RATE_LIMITED, str(error))
    timed_out = calls[-1:] == [ErrorKind.TIMEOUT]
    if Outcome.DEADLINE in outcomes or "(deadline exceeded)" in str(error) or timed_out:
        return Failure(504, "deadline", str(error))
    if calls and all(kind in _CALLERS_FAULT for kind in calls):
        return Failure(400, calls[-1], str(error))
    if not calls and outcomes and all(outcome in _MISFITS for outcome in outcomes):
        return Failure(400, "no_target_fits", str(error))
    return Failure(502, calls[-1] if calls else "no_target_available", str(error))


def _provider(error: ProviderError) -> Failure:
    if error.kind in _CALLERS_FAULT:
        return Failure(400, error.kind, str(error))
    if error.kind is ErrorKind.RATE_LIMITED:
        return Failure(429, error.kind, str(error), error.retry_after)
    if error.kind is ErrorKind.TIMEOUT:
        return Failure(504, error.kind, str(error))
    return Failure(502, error.kind, str(error))
