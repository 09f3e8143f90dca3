"""What a target has been answering, to estimate the next answer's length before it is sent.

Limits and budgets reserve a call's tokens and dollars before it goes and correct them with
the real usage after. With `max_tokens` set the output is at most that; without it the
estimate is a high percentile (p90) of the output tokens the target recently produced, so that
long answers are not reserved as short ones (which lets a fleet overspend before the
corrections land) and short ones are not reserved as long ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["DEFAULT_OUTPUT_ESTIMATE", "OutputTokens", "percentile"]

_N = TypeVar("_N", int, float)

# Output tokens assumed while a target has produced too few answers to learn from.
DEFAULT_OUTPUT_ESTIMATE = 1024
QUANTILE = 0.9
KEPT = 200  # the most recent answers the percentile is taken over
TRUSTED_AFTER = 10  # before this many answers the estimate is never below the default
_REFRESH_EVERY = 16  # answers between two sorts


class OutputTokens:
    """The output tokens of a target's recent answers, and the estimate they give."""

    __slots__ = ("_estimate", "_seen", "_since_sort", "_tokens")

    def __init__(self) -> None:
        self._tokens: deque[int] = deque(maxlen=KEPT)
        self._seen = 0
        self._since_sort = 0
        self._estimate = DEFAULT_OUTPUT_ESTIMATE

    @property
    def estimate(self) -> int:
        """The p90 of the recent answers (at least the default until `TRUSTED_AFTER` of them)."""
        return self._estimate

    def add(self, tokens: int) -> None:
        """One answer's output tokens."""
        self._tokens.append(tokens)
        self._seen += 1
        self._since_sort += 1
        # Early answers move the estimate at once; later ones every few answers (a sort of at most KEPT).
        if self._seen <= TRUSTED_AFTER or self._since_sort >= _REFRESH_EVERY or tokens > self._estimate:
            self._refresh()

    def _refresh(self) -> None:
        self._since_sort = 0
        p90 = percentile(self._tokens, QUANTILE)
        self._estimate = max(p90, DEFAULT_OUTPUT_ESTIMATE) if self._seen < TRUSTED_AFTER else p90


def percentile(values: Sequence[_N], q: float) -> _N:
    """Nearest-rank percentile: the smallest value with at least `q` of the values at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
