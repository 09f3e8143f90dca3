"""What to do after a failed call: retry the same target, fail over to the next, or raise.

`decide` is a pure function of the error, the route's rules and where the request stands; the
engine carries the verdict out (the wait, the trail, the events). The only thing it is handed
that is not a value is `rand`, the source of backoff jitter, drawn only when a backoff is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from router.errors import ErrorKind, ProviderError
from router.policy.compile import RoutePlan
from router.resilience.backoff import backoff_delay

__all__ = ["Failover", "Raise", "Retry", "Verdict", "decide"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Call the same target again after `delay` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Failover:
    """Move on to the next candidate.

    `window_at_most`: after a `context_length` error, the failed target's window (None: not known);
    a candidate whose known window is no larger cannot help. `refused_prefill`: the target refused
    the text it was asked to continue; it may still start the answer over without it.
    """

    window_at_most: int | None = None
    refused_prefill: bool = False


@dataclass(frozen=True, slots=True)
class Raise:
    """The error ends the request: the caller's fault, the route's rule, or what the caller asked for."""


Verdict = Retry | Failover | Raise


def decide(
    error: ProviderError,
    route: RoutePlan,
    *,
    calls: int,
    time_left: float,
    rand: Callable[[], float],
    may_retry: bool = True,
    surfaced: bool = False,
    prefilled: bool = False,
    window: int | None = None,
) -> Verdict:
    """The verdict on `error` from a target already called `calls` times for this request.

    `time_left`: until the request's deadline. `may_retry`: False once the retry budget is spent.
    `surfaced`: part of this answer reached the caller, who asked to be told rather than recovered
    for (`stream_recovery: raise`). `prefilled`: the call carried an assistant prefill. `window`:
    the target's context window, if declared.
    """
    kind = error.kind
    if surfaced:
        return Raise()
    if may_retry and kind in route.retry_on and calls < route.attempts and not kind.blames_request:
        delay = retry_delay(error, route, calls, rand)
        if delay is not None and delay < time_left:
            return Retry(delay)
    if prefilled and kind is ErrorKind.BAD_REQUEST:
        # The target declared prefill but refused this one: not the caller's fault, and a restart remains.
        return Failover(refused_prefill=True)
    if kind in route.failover_on:
        return Failover(window_at_most=window if kind is ErrorKind.CONTEXT_LENGTH else None)
    return Raise()


def retry_delay(
    error: ProviderError, route: RoutePlan, retry: int, rand: Callable[[], float]
) -> float | None:
    """How long to wait before the `retry`-th retry, or None when moving on beats waiting."""
    if route.honor_retry_after and error.retry_after is not None:
        # A long Retry-After means "go elsewhere": the next target is better than waiting.
        return error.retry_after if error.retry_after <= route.backoff_max else None
    return backoff_delay(
        retry, base=route.backoff_base, cap=route.backoff_max, jitter=route.jitter, rand=rand
    )
