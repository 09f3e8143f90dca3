"""A process-wide cap on retries, as a ratio of requests (Envoy's retry budget).

During an outage every request wants to retry; without a budget the retries multiply the
load on a provider that is already failing.
"""

from __future__ import annotations

import math

from router.clock import Clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """Allows a retry while retries in the window stay under `max(min_retries, ratio * requests)`."""

    __slots__ = ("_clock", "_min_retries", "_ratio", "_requests", "_retries", "_second", "_slots", "_window")

    def __init__(self, *, ratio: float, min_retries: int, window: float, clock: Clock) -> None:
        self._ratio = ratio
        self._min_retries = min_retries
        self._clock = clock
        self._slots = max(1, math.ceil(window))
        # One-second buckets in a ring: the window slides without keeping a timestamp per event.
        self._requests = [0] * self._slots
        self._retries = [0] * self._slots
        self._second = int(clock.monotonic())

    def _rotate(self) -> int:
        second = int(self._clock.monotonic())
        if second != self._second:
            stale = min(second - self._second, self._slots)
            for step in range(1, stale + 1):
                slot = (self._second + step) % self._slots
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._second = second
        return second % self._slots

    def on_request(self) -> None:
        self._requests[self._rotate()] += 1

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when the budget is spent."""
        slot = self._rotate()
        allowed = max(self._min_retries, self._ratio * sum(self._requests))
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[slot] += 1
        return True
