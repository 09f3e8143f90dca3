"""`router simulate`: a chaos scenario run in virtual time, in a second or two, with the same report.

The `Router` under test is the real one, with the policy's breakers, retries, backoff, hedging,
deadlines, limits and health checks; only time and the upstream are simulated. A `FakeClock`
drives the router, the load and the in-process providers of `router.chaos.sim_provider`, which
play the scenario's fault schedule as the fake upstream would, so nothing waits for real: time
jumps to the next timer whenever every task is waiting. Several workers are several routers in
one loop (sharing one in-memory store when the scenario shares state through Redis).

What it does not model: the network, the SDKs and the CPU. Every upstream call takes
`CALL_LATENCY` plus its faults' delays, so latency figures are the policy's waits and the
scenario's latency, and a closed-loop load sends what those allow.
"""

from __future__ import annotations

import asyncio
import os
import time

from rich.console import Console

from router.chaos.bench import ChaosResult, publish
from router.chaos.contenders import RouterContender
from router.chaos.load import drive
from router.chaos.recording import Recording
from router.chaos.report import build_report
from router.chaos.runner import drain_for, new_recording
from router.chaos.scenario import Scenario
from router.chaos.sim_provider import CALL_LATENCY, SimulatedUpstream
from router.policy.model import StateSpec
from router.state.memory import MemoryStore
from router.testing import FakeClock

__all__ = ["run_simulation", "simulate_scenario"]


async def simulate_scenario(scenario: Scenario) -> Recording:
    """Run the scenario's load through the router in virtual time; the recording of `run_scenario`."""
    clock = FakeClock()
    upstream = SimulatedUpstream(scenario.faults, seed=scenario.seed, clock=clock)
    # In memory, whatever the policy says: a simulation touches no Redis (the workers share a store).
    policy = scenario.policy.model_copy(update={"state": StateSpec()})
    shared = MemoryStore(clock) if scenario.redis and scenario.workers > 1 else None
    recording = new_recording(scenario, "router", scenario.workers)
    contenders = [
        RouterContender(
            policy,
            sink=recording,
            worker=worker,
            seed=scenario.seed,
            clock=clock,
            providers={name: upstream.provider(name, spec) for name, spec in policy.providers.items()},
            store=shared,
        )
        for worker in range(scenario.workers)
    ]
    try:
        for contender in contenders:
            await contender.start()
        upstream.origin = origin = clock.monotonic()
        await asyncio.gather(
            *(
                drive(
                    contender,
                    scenario.load,
                    duration=scenario.duration,
                    origin=origin,
                    sink=recording,
                    worker=worker,
                    drain=drain_for(scenario),
                    clock=clock,
                )
                for worker, contender in enumerate(contenders)
            )
        )
    finally:
        for contender in contenders:
            await contender.aclose()
    recording.upstream = upstream.calls
    recording.notes.append(
        f"simulated in virtual time: every upstream call takes {CALL_LATENCY * 1000:g} ms plus its "
        "faults' delays; the network, the SDKs and the CPU are not modelled"
    )
    if scenario.workers > 1 and shared is None:
        recording.notes.append("several workers without Redis: each keeps its own breakers")
    return recording


def run_simulation(
    scenario: Scenario, out: str | os.PathLike[str], *, console: Console | None = None
) -> ChaosResult:
    """Simulate the scenario, print the figures as `router chaos` does, write NAME.simulated.json/.png."""
    console = console or Console()
    started = time.perf_counter()
    recording = asyncio.run(simulate_scenario(scenario))
    wall = time.perf_counter() - started
    notes = [f"simulated {scenario.duration:g} s of load in {wall:.2f} s"]
    return publish(scenario, [build_report(recording)], out, console=console, notes=notes, simulated=True)
