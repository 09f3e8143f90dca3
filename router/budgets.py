"""Budgets: dollars reserved before each call and settled with the real cost after.

Each budget is a token bucket of dollars in the state store (so a fleet shares it): `usd` of
capacity, refilled at `usd` per hour or per day. A call reserves its estimated cost (prompt
tokens + max_tokens at the target's prices) before it goes, so a fleet overspends by at most
one estimate per worker; the difference to the real cost is settled afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from router.errors import BudgetExceeded
from router.policy.compile import BudgetPlan, RoutePlan, TargetPlan
from router.state.base import StateStore, StoreUnavailable

__all__ = ["Budgets", "Reservation"]

logger = logging.getLogger("router")

Reservation = tuple[tuple[BudgetPlan, ...], float]


class Budgets:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._settling: set[asyncio.Task[Any]] = set()

    async def reserve(self, route: RoutePlan, target: TargetPlan, estimate: float) -> Reservation | None:
        """Take the estimate from every budget covering the target; None when one is spent (skip it)."""
        taken: list[BudgetPlan] = []
        for budget in route.budgets:
            if not budget.covers(target):
                continue
            try:
                wait = await self._store.reserve(
                    _key(budget), estimate, budget.usd, budget.usd / budget.period, 0.0
                )
            except StoreUnavailable:
                continue  # no verdict from the store: the call goes, and is not counted
            except BaseException:  # cancelled (or worse) half-way: what was taken goes back
                self.settle((tuple(taken), estimate), 0.0)
                raise
            if wait < 0:
                self.settle((tuple(taken), estimate), 0.0)
                if budget.raise_when_spent:
                    raise BudgetExceeded(budget.name, route.name, budget.usd, budget.per)
                return None
            taken.append(budget)
        return tuple(taken), estimate

    def settle(self, reservation: Reservation, actual: float) -> None:
        """Correct the reservation with the real cost (0 for a call that failed), in the background."""
        budgets, estimate = reservation
        if not budgets or actual == estimate:
            return
        task = asyncio.get_running_loop().create_task(self._adjust(budgets, actual - estimate))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _adjust(self, budgets: tuple[BudgetPlan, ...], delta: float) -> None:
        for budget in budgets:
            try:
                await self._store.adjust(_key(budget), delta, budget.usd, budget.usd / budget.period)
            except StoreUnavailable:
                logger.debug("budget %s: could not settle %+.6f USD", budget.name, delta)


def _key(budget: BudgetPlan) -> str:
    return f"budget:{budget.name}"
