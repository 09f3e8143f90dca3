"""Budgets: dollars reserved before each call and settled with the real cost after.

Each budget is a token bucket of dollars in the state store (so a fleet shares it): `usd` of
capacity, refilled at `usd` per hour or per day. A worker spends it from its lease of the
bucket (`router._quota`): a call reserves its estimated cost (prompt tokens plus `max_tokens`,
or what the target has been answering, at the target's prices) in memory before it goes, and
the difference to the real cost is settled afterwards, in memory too. No budget waits on the
store. How far a fleet may overspend is in `router._quota` (and the README).
"""

from __future__ import annotations

from router._quota import Lease, Quotas, budget_bucket
from router.errors import BudgetExceeded
from router.policy.compile import BudgetPlan, RoutePlan, TargetPlan

__all__ = ["Budgets", "Reservation"]

Reservation = tuple[tuple[BudgetPlan, ...], float]


class Budgets:
    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    async def reserve(self, route: RoutePlan, target: TargetPlan, estimate: float) -> Reservation | None:
        """Take the estimate from every budget covering the target; None when one is spent (skip it).

        It never suspends: the leases are in memory.
        """
        taken: list[BudgetPlan] = []
        for budget in route.budgets:
            if not budget.covers(target):
                continue
            if not self.lease(budget).take(estimate):
                for earlier in taken:
                    self.lease(earlier).give(estimate)
                if budget.raise_when_spent:
                    raise BudgetExceeded(budget.name, route.name, budget.usd, budget.per)
                return None
            taken.append(budget)
        return tuple(taken), estimate

    def settle(self, reservation: Reservation, actual: float) -> None:
        """Correct the reservation with the real cost (0 for a call that failed)."""
        budgets, estimate = reservation
        if actual != estimate:
            for budget in budgets:
                self.lease(budget).settle(actual - estimate)

    def lease(self, budget: BudgetPlan) -> Lease:
        """This worker's lease of the budget's bucket."""
        return self._quotas.lease(budget_bucket(budget), budget.usd, budget.usd / budget.period, credit=True)
