"""Route strategies: the order in which a route offers its targets, one small callable each.

A strategy sees the route's targets as `Candidate`s (weight, this request's estimated cost, observed
latency) and returns them in the order to try; it may leave some out. The engine applies it to every
request (`router._selection`), and `router explain --traffic` asks it where traffic goes
(`router.traffic`). `register_strategy` adds one; a policy may name it once it is registered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router._registry import Registry

if TYPE_CHECKING:
    from router.policy.compile import TargetPlan

__all__ = ["STRATEGIES", "Candidate", "Strategy", "register_strategy"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One target of a route as a strategy sees it, for one request.

    `position`: its place in the route's list; `latency`: seconds, smoothed over its calls (None:
    not measured yet); `input_tokens`, `output_tokens`: the request's estimated size.
    """

    position: int
    target: TargetPlan
    weight: float
    latency: float | None
    input_tokens: int
    output_tokens: int

    @property
    def cost(self) -> float:
        """What this request would cost on the target, in USD (estimated)."""
        return self.target.cost(self.input_tokens, self.output_tokens)


Order = Callable[[Sequence[Candidate], random.Random], Sequence[Candidate]]


@dataclass(frozen=True, slots=True)
class Strategy:
    """A named order: `order(candidates, rng)` gives the candidates to try, best first.

    `shares`, for an order that is random: the share of requests each candidate gets first (what
    `router explain --traffic` shows); without it the first candidate of the order gets them all.
    """

    name: str
    order: Order
    shares: Callable[[Sequence[Candidate]], Sequence[float]] | None = None

    def __str__(self) -> str:
        return self.name


def ordered(candidates: Sequence[Candidate], rng: random.Random) -> Sequence[Candidate]:
    """The route's own order: primary first."""
    return candidates


def weighted(candidates: Sequence[Candidate], rng: random.Random) -> Sequence[Candidate]:
    """A random order in which each candidate leads in proportion to its weight."""
    # Efraimidis-Spirakis: one key per item gives a weighted order without replacement.
    keys = [rng.random() ** (1.0 / candidate.weight) for candidate in candidates]
    return [candidate for _, candidate in sorted(zip(keys, candidates, strict=True), key=lambda kv: -kv[0])]


def _weight_shares(candidates: Sequence[Candidate]) -> Sequence[float]:
    total = sum(candidate.weight for candidate in candidates)
    return [candidate.weight / total for candidate in candidates]


def cheapest(candidates: Sequence[Candidate], rng: random.Random) -> Sequence[Candidate]:
    """Cheapest first, for this request's estimated size."""
    return sorted(candidates, key=lambda candidate: candidate.cost)


def fastest(candidates: Sequence[Candidate], rng: random.Random) -> Sequence[Candidate]:
    """Lowest observed latency first."""
    # An unmeasured target sorts first, so every target gets measured.
    return sorted(candidates, key=lambda candidate: candidate.latency or 0.0)


STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    [
        Strategy("ordered", ordered),
        Strategy("weighted", weighted, _weight_shares),
        Strategy("cheapest", cheapest),
        Strategy("fastest", fastest),
    ],
)


def register_strategy(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Make `strategy: <strategy.name>` a route strategy of every policy validated from now on.

    A name already registered (built-in or not) is refused unless `replace`.
    """
    return STRATEGIES.register(strategy, replace=replace)
