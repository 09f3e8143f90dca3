"""When a breaker opens and for how long: the one rule a worker and a fleet share.

A breaker trips on a failure *rate* over a sliding time window once the window holds
`min_calls` calls (Resilience4j's sliding window, Envoy's success-rate ejection), or on
`consecutive` failures in a row, whatever the volume (Envoy's consecutive-5xx: a target that
is hard down). The open period doubles per re-trip from `reset_timeout` up to
`max_reset_timeout`.

`OutcomeWindow` is the reference implementation of the counting: the in-process breaker and
`MemoryStore` use it, and `router/state/lua/report.lua` is its twin for a fleet (the state
contract tests run both). `open_time` has one twin there too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["BUCKETS", "OutcomeWindow", "TripRule", "open_time"]

BUCKETS = 10  # a window is counted in this many slices; old slices fall off whole
# Past 2**30 doublings every sane cap has long been reached; capping the exponent keeps the
# float arithmetic finite whatever the trip count (2.0 ** 1024 overflows).
_MAX_DOUBLINGS = 30


def open_time(trips: int, reset_timeout: float, max_reset_timeout: float) -> float:
    """The open period after `trips` trips in a row: doubling from `reset_timeout`, capped."""
    cap = max(max_reset_timeout, reset_timeout)
    doublings = min(max(trips - 1, 0), _MAX_DOUBLINGS)
    return min(cap, reset_timeout * 2.0**doublings)


@dataclass(frozen=True, slots=True)
class TripRule:
    """The breaker settings of one target, as every worker and the shared store apply them."""

    consecutive: int
    failure_rate: float
    min_calls: int
    window: float
    min_workers: int
    reset_timeout: float
    max_reset_timeout: float

    def trips(self, calls: int, failures: int, in_a_row: int) -> bool:
        """Do `calls` calls, `failures` of them failed (`in_a_row` the last ones), open the breaker?"""
        if in_a_row >= self.consecutive:
            return True
        return calls >= self.min_calls and failures >= self.failure_rate * calls

    def open_time(self, trips: int) -> float:
        return open_time(trips, self.reset_timeout, self.max_reset_timeout)


class OutcomeWindow:
    """Calls and failures over the last `window` seconds, and failures in a row.

    Everything is forgotten once a whole window passes without an outcome, the failures in a
    row included: a streak spread over a quiet hour says little about a target now.
    """

    __slots__ = ("_slices", "_width", "in_a_row")

    def __init__(self, window: float) -> None:
        self._width = window / BUCKETS
        self._slices: deque[list[int]] = deque()  # [slice index, calls, failures], oldest first
        self.in_a_row = 0

    def add(self, now: float, successes: int, failures: int) -> None:
        index = self._prune(now)
        slices = self._slices
        if not slices or slices[-1][0] != index:
            slices.append([index, 0, 0])
        current = slices[-1]
        current[1] += successes + failures
        current[2] += failures
        self.in_a_row = failures if successes else self.in_a_row + failures

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the window ending at `now`."""
        self._prune(now)
        calls = failures = 0
        for _, c, f in self._slices:
            calls += c
            failures += f
        return calls, failures

    def clear(self) -> None:
        self._slices.clear()
        self.in_a_row = 0

    def _prune(self, now: float) -> int:
        index = int(now // self._width)
        slices = self._slices
        while slices and slices[0][0] <= index - BUCKETS:
            slices.popleft()
        if not slices:
            self.in_a_row = 0
        return index
