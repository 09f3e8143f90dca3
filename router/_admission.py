"""Admission of one call: the limiter's slot and the budgets' dollars, taken before and given back once.

`admit` takes them (or says, as an attempt outcome, why the call may not go); the `Ticket` it
returns is settled exactly once when the call is over, with the usage that corrects the estimates.
"""

from __future__ import annotations

from router._budgets import Budgets, Reservation
from router._selection import Request
from router.policy.compile import RoutePlan
from router.resilience.limiter import Limiter
from router.resilience.runtime import TargetRuntime
from router.results import Outcome, Usage

__all__ = ["NO_TICKET", "Ticket", "admit"]


class Ticket:
    """What one call holds, given back once by `settle`: its place among the runtime's calls in
    flight, a limiter slot, and the budgets' reserved dollars."""

    __slots__ = ("budgets", "limiter", "reservation", "runtime", "tokens")

    def __init__(
        self,
        runtime: TargetRuntime | None,
        limiter: Limiter | None = None,
        tokens: int = 0,
        budgets: Budgets | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        self.runtime = runtime
        self.limiter = limiter
        self.tokens = tokens
        self.budgets = budgets
        self.reservation = reservation
        if runtime is not None:
            runtime.in_flight += 1

    def settle(self, usage: Usage | None) -> None:
        """The call is over; `usage` (None: nothing was generated) corrects the estimates."""
        runtime = self.runtime
        if runtime is None:
            return
        runtime.in_flight -= 1
        if usage is not None:
            runtime.outputs.add(usage.output_tokens)  # what the next estimates learn from
        if self.limiter is not None:
            self.limiter.release(self.tokens, usage.total_tokens if usage else None)
        if self.budgets is not None and self.reservation is not None:
            cost = runtime.plan.cost(usage.input_tokens, usage.output_tokens) if usage else 0.0
            self.budgets.settle(self.reservation, cost)


NO_TICKET = Ticket(None)  # an open stream's until the engine hands it the call's own


async def admit(
    runtime: TargetRuntime, route: RoutePlan, request: Request, deadline: float, budgets: Budgets | None
) -> Ticket | Outcome:
    """Take the limiter's slot and the budgets' dollars for one call, or say why not (an outcome)."""
    limiter = runtime.limiter
    if limiter is None and not route.budgets:
        return Ticket(runtime)
    output = runtime.output_estimate(request)
    tokens = request.input_tokens + output
    if limiter is not None and not await limiter.acquire(tokens, deadline):
        return Outcome.LIMITED
    reservation = None
    if route.budgets:
        assert budgets is not None  # a plan with budgets gets a Budgets (see Router)
        estimate = runtime.plan.cost(request.input_tokens, output)
        try:
            reservation = await budgets.reserve(route, runtime.plan, estimate)
        finally:
            if reservation is None and limiter is not None:
                limiter.release(tokens, 0)  # the call never goes out: every token goes back
        if reservation is None:
            return Outcome.OVER_BUDGET
    return Ticket(runtime, limiter, tokens, budgets if reservation else None, reservation)
