"""How long to wait before retrying the same target."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(retry: int, *, base: float, cap: float, jitter: bool, rand: Callable[[], float]) -> float:
    """Exponential backoff for the `retry`-th retry (1-based), capped, with full jitter.

    Full jitter (a uniform draw in [0, ceiling]) spreads retries from many callers instead of
    synchronising them into waves; see the AWS architecture blog's "Exponential Backoff And Jitter".
    """
    ceiling = min(cap, base * 2.0 ** (retry - 1))
    return ceiling * rand() if jitter else ceiling
