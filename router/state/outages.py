"""One log line when the store goes and one when it is back, per outage.

A store that flaps (fails again within `SETTLE` seconds of coming back) is still in the same
outage: a worker says once that it lost the store and once that it has it back, not once per
failed call or per flap.
"""

from __future__ import annotations

from router.clock import Clock

__all__ = ["SETTLE", "Outages"]

SETTLE = 30.0  # seconds a store must answer after coming back before a new failure is a new outage


class Outages:
    """Which changes of a link to the store deserve a line: the start of an outage and its first recovery.

    Call `lost` when the link goes from answering to not answering, and `back` when it answers
    again; each says whether to log.
    """

    __slots__ = ("_back_at", "_back_told", "_clock", "_in_outage", "_settle")

    def __init__(self, clock: Clock, settle: float = SETTLE) -> None:
        self._clock = clock
        self._settle = settle
        self._in_outage = False
        self._back_told = False
        self._back_at: float | None = None

    def lost(self) -> bool:
        """The store stopped answering: whether this starts a new outage (log it)."""
        back_at = self._back_at
        if self._in_outage and (back_at is None or self._clock.monotonic() - back_at < self._settle):
            return False  # still out, or out again while settling: the same outage
        self._in_outage, self._back_told, self._back_at = True, False, None
        return True

    def back(self) -> bool:
        """The store answers again: whether this is the outage's first recovery (log it)."""
        if not self._in_outage:
            return False
        self._back_at = self._clock.monotonic()
        told, self._back_told = self._back_told, True
        return not told
