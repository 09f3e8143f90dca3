"""`router demo`: an incident on a fake upstream, routed around and recovered from, in seconds.

No keys, no Redis: both "clouds" are models on one loopback fake upstream. The primary goes
down (HTTP 503), the router fails over, its breaker opens so the primary stops costing an
attempt, and when the primary is back the breaker's probe returns traffic to it.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from router.core import Router
from router.errors import RouterError
from router.policy.loader import parse_policy
from router.resilience.breaker import BreakerTransition
from router.results import Completion
from router.testing import FakeUpstream, Fault

__all__ = ["run_demo"]

DEMO_POLICY = """
providers:
  primary-cloud:
    type: openai_compatible
    base_url: ${UPSTREAM}
    breaker: {fail_max: 3, reset_timeout: 1s}
  backup-cloud:
    type: openai_compatible
    base_url: ${UPSTREAM}
targets:
  fast-large:
    provider: primary-cloud
    model: gpt-4o
    price: {input: 2.50, output: 10.00}
  backup-small:
    provider: backup-cloud
    model: claude-3-5-haiku
    price: {input: 0.80, output: 4.00}
routes:
  chat:
    targets: [fast-large, backup-small]
    latency_budget: {total: 10s, per_attempt: 2s}
    retry: {attempts: 2, backoff_base: 50ms}
"""

_PHASES = (("healthy", 3), ("primary down", 6), ("recovered", 4))


def _trail(result: Completion) -> str:
    return ", ".join(f"{a.target} {a.outcome}" for a in result.attempts)


async def _run(console: Console) -> int:
    lost = 0
    with FakeUpstream() as upstream:
        transitions: list[BreakerTransition] = []
        policy = parse_policy(DEMO_POLICY, "<demo>", env={"UPSTREAM": upstream.base_url})
        async with Router(policy, seed=1, on_transition=transitions.append) as router:
            table = Table(title="router demo: the primary goes down, then comes back")
            for column in ("#", "phase", "answered by", "cost (USD)", "latency"):
                table.add_column(column, no_wrap=True)
            table.add_column("attempt trail")
            number = 0
            for phase, requests in _PHASES:
                if phase.startswith("primary down"):
                    upstream.add_fault("gpt-4o", Fault.unavailable())
                elif phase == "recovered":
                    upstream.clear_faults()
                    await asyncio.sleep(1.1)  # the breaker's reset timeout: the next call probes
                for _ in range(requests):
                    number += 1
                    messages = [{"role": "user", "content": f"Request {number}: say hello."}]
                    try:
                        result = await router.complete("chat", messages, max_tokens=32)
                    except RouterError as error:
                        lost += 1
                        table.add_row(str(number), phase, "[red]failed[/red]", "", "", str(error))
                        continue
                    table.add_row(
                        str(number),
                        phase,
                        result.target,
                        f"{result.cost_usd:.6f}",
                        f"{result.latency_s * 1000:.1f} ms",
                        _trail(result),
                    )
            console.print(table)
            for event in transitions:
                console.print(f"breaker [bold]{event.target}[/bold]: {event.old} -> {event.new}")
            upstream_calls = {model: upstream.count(model) for model in ("gpt-4o", "claude-3-5-haiku")}
            console.print(f"upstream saw: {upstream_calls}; requests lost: [bold]{lost}[/bold]")
    return lost


def run_demo(console: Console | None = None) -> int:
    """Run the scripted incident; returns the number of requests lost (0 when all is well)."""
    return asyncio.run(_run(console or Console()))
