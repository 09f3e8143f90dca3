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
from collections.abc import Mapping

from rich.console import Console

from router.chaos.bench import ChaosResult, publish
from router.chaos.contenders import RouterContender
from router.chaos.load import Answer, Sink, drive
from router.chaos.recording import Recording
from router.chaos.report import build_report
from router.chaos.runner import drain_for, new_recording
from router.chaos.scenario import Load, Scenario
from router.chaos.sim_provider import CALL_LATENCY, SimulatedUpstream
from router.policy.model import Policy, StateSpec
from router.providers.base import Provider
from router.state.base import StateStore
from router.state.memory import MemoryStore
from router.testing import FakeClock

__all__ = ["run_simulation", "simulate_scenario"]


class _SimulatedContender(RouterContender):
    """Our router on the fake clock. A request that called nobody (every target skipped) took no
    virtual time; in a closed loop that would spin forever at one instant, so it takes a call's."""

    def __init__(
        self,
        policy: Policy,
        *,
        sink: Sink,
        worker: int,
        seed: int,
        clock: FakeClock,
        providers: Mapping[str, Provider],
        store: StateStore | None,
    ) -> None:
        super().__init__(
            policy, sink=sink, worker=worker, seed=seed, clock=clock, providers=providers, store=store
        )
        self._clock = clock

    async def send(self, load: Load) -> Answer:
        started = self._clock.monotonic()
        answer = await super().send(load)
        if self._clock.monotonic() == started:
            await self._clock.sleep(CALL_LATENCY)
        return answer


async def simulate_scenario(scenario: Scenario) -> Recording:
    """Run the scenario's load through the router in virtual time; the recording of `run_scenario`."""
    clock = FakeClock()
    models = {target.model for target in scenario.policy.targets.values()}
    upstream = SimulatedUpstream(scenario.faults, seed=scenario.seed, clock=clock, models=models)
    # In memory, whatever the policy says: a simulation touches no Redis (the workers share a store).
    policy = scenario.policy.model_copy(update={"state": StateSpec()})
    shared = MemoryStore(clock) if scenario.redis else None
    recording = new_recording(scenario, "router", scenario.workers)
    contenders = [
        _SimulatedContender(
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
    await _drive_all(contenders, scenario, upstream, recording, clock)
    recording.upstream = upstream.calls
    recording.notes.append(
        f"simulated in virtual time: every upstream call takes {CALL_LATENCY * 1000:g} ms plus its "
        "faults' delays; the network, the SDKs and the CPU are not modelled"
    )
    if scenario.workers > 1 and shared is None:
        recording.notes.append("several workers without Redis: each keeps its own breakers")
    return recording


async def _drive_all(
    contenders: list[_SimulatedContender],
    scenario: Scenario,
    upstream: SimulatedUpstream,
    recording: Recording,
    clock: FakeClock,
) -> None:
    """Start the workers, send the scenario's load through every one at once, close them."""
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
