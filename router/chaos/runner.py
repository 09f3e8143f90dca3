"""One contender's run of a scenario: a fake upstream, the fault schedule, the load, the recording.

The run starts a `FakeUpstream` of its own (the scenario's seed), points the policy at it,
and sends the load in this process (one worker) or in worker processes (several, sharing
Redis state when the run has a URL). Fault windows count from the start of the load, which
every process agrees on. `monitor(recording, elapsed)` is called a few times a second while
the load runs, for progress bars and live views.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

from router.chaos.contenders import build_contender
from router.chaos.load import drive
from router.chaos.recording import Recording
from router.chaos.scenario import Scenario
from router.chaos.upstream import Endpoints, install_faults, serve_models, upstream_calls
from router.chaos.workers import Job, WorkerPool, job_policy
from router.testing import FakeUpstream

__all__ = ["Monitor", "drain_for", "new_recording", "run_scenario"]

logger = logging.getLogger("router.chaos")

Monitor = Callable[[Recording, float], None]

MONITOR_INTERVAL = 0.2
# Head start between the origin being fixed and the first request: faults are installed meanwhile.
_LEAD = 0.05
_LEAD_PROCESSES = 0.25
# A request may outlive the load by its route's total budget and this much, then it is lost.
_DRAIN_SLACK = 5.0


async def run_scenario(
    scenario: Scenario,
    *,
    contender: str = "router",
    workers: int | None = None,
    redis: str | None = None,
    monitor: Monitor | None = None,
) -> Recording:
    """Run the scenario through `contender` ("router" or "litellm"); `workers` and `redis` override
    the scenario's."""
    workers = workers or scenario.workers
    redis = redis or scenario.redis
    recording = new_recording(scenario, contender, workers)
    namespace = f"router-chaos:{uuid.uuid4().hex[:12]}"
    drain = drain_for(scenario)
    try:
        with _quiet_server(), FakeUpstream(seed=scenario.seed) as upstream:
            serve_models(upstream, {target.model for target in scenario.policy.targets.values()})
            job = _job(scenario, contender, upstream, drain=drain, redis=redis, namespace=namespace)
            if workers == 1:
                origin = await _here(scenario, job, upstream, recording, monitor)
            else:
                origin = await _in_processes(scenario, job, workers, upstream, recording, monitor)
            recording.upstream = upstream_calls(upstream, origin)
    finally:
        if redis:
            await asyncio.to_thread(_forget, redis, namespace)
    if workers > 1 and not redis and contender == "router":
        recording.notes.append("several workers without Redis: each keeps its own breakers")
    return recording


def _job(
    scenario: Scenario,
    contender: str,
    upstream: FakeUpstream,
    *,
    drain: float,
    redis: str | None,
    namespace: str,
) -> Job:
    """What every worker runs: the scenario's load through `contender`, against `upstream`."""
    return Job(
        contender=contender,
        policy_text=scenario.policy_text,
        policy_file=scenario.policy_file,
        endpoints=Endpoints.of(upstream),
        load=scenario.load,
        duration=scenario.duration,
        drain=drain,
        seed=scenario.seed,
        redis=redis,
        namespace=namespace,
    )


def new_recording(scenario: Scenario, contender: str, workers: int) -> Recording:
    """An empty recording of `contender`'s run of the scenario with `workers` workers."""
    return Recording(
        contender=contender,
        scenario=scenario.name,
        duration=scenario.duration,
        workers=workers,
        primary=scenario.primary,
        models={name: scenario.policy.targets[name].model for name in scenario.route_targets()},
        incidents=scenario.incidents,
    )


def drain_for(scenario: Scenario) -> float:
    """How long a request may outlive the load before it counts as lost (`unfinished`)."""
    return scenario.policy.routes[scenario.load.route].latency_budget.total + _DRAIN_SLACK


async def _here(
    scenario: Scenario, job: Job, upstream: FakeUpstream, recording: Recording, monitor: Monitor | None
) -> float:
    policy = job_policy(job, scenario.policy)
    contender = build_contender(job.contender, policy, route=job.load.route, sink=recording, seed=job.seed)
    try:
        await contender.start()
        origin = time.monotonic() + _LEAD
        install_faults(upstream, scenario.faults, origin)
        async with _watching(monitor, recording, origin):
            await drive(
                contender, job.load, duration=job.duration, origin=origin, sink=recording, drain=job.drain
            )
    finally:
        await contender.aclose()
    return origin


async def _in_processes(
    scenario: Scenario,
    job: Job,
    workers: int,
    upstream: FakeUpstream,
    recording: Recording,
    monitor: Monitor | None,
) -> float:
    pool = WorkerPool(workers, job, recording)
    try:
        await pool.ready()
        origin = time.monotonic() + _LEAD_PROCESSES
        install_faults(upstream, scenario.faults, origin)
        pool.go(origin)
        async with _watching(monitor, recording, origin):
            await pool.finished()
    finally:
        await asyncio.to_thread(pool.close)
    recording.notes.extend(f"worker error: {error}" for error in pool.errors)
    return origin


@contextlib.asynccontextmanager
async def _watching(monitor: Monitor | None, recording: Recording, origin: float) -> AsyncIterator[None]:
    async def watch() -> None:
        assert monitor is not None
        while True:
            monitor(recording, time.monotonic() - origin)
            await asyncio.sleep(MONITOR_INTERVAL)

    task = asyncio.create_task(watch()) if monitor is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert monitor is not None
            monitor(recording, time.monotonic() - origin)


@contextlib.contextmanager
def _quiet_server() -> Iterator[None]:
    """The fake upstream's server logs a traceback whenever a client hangs up mid-stream, which is
    what half the faults provoke; in a chaos run that is noise."""
    server = logging.getLogger("aiohttp.server")
    level = server.level
    server.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        server.setLevel(level)


def _forget(url: str, namespace: str) -> None:
    """Delete the run's keys: every run has a namespace of its own."""
    try:
        import redis
    except ImportError:
        return
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError as error:
        logger.warning("could not delete the run's Redis keys (%s:*): %s", namespace, type(error).__name__)
    finally:
        client.close()
