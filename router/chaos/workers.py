"""Worker processes: each sends the whole load through a contender of its own.

Workers are spawned interpreters. Each parses the policy again, pins it to the fake upstream
(sharing Redis state when the run has a URL), builds its contender and says it is ready; the
parent then sends every worker the same origin (a monotonic time, which is system-wide, so
all processes and the fake upstream's fault windows agree on it). Events come back on one
queue and land in the parent's `Recording` as they happen, so live displays see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pydantic import SecretStr

from router.chaos.contenders import build_contender
from router.chaos.load import Sink, drive
from router.chaos.network import forbid_remote_connections
from router.chaos.recording import RequestEvent, StatusEvent, TransitionEvent
from router.chaos.scenario import Load, chaos_env
from router.chaos.upstream import Endpoints, pin_policy
from router.errors import RouterError
from router.policy.loader import parse_policy
from router.policy.model import Policy, StateSpec

__all__ = ["Job", "WorkerPool", "job_policy"]

READY_TIMEOUT = 60.0
"""Seconds a worker may take to start (an interpreter, the SDKs, the policy) before the run gives up."""


@dataclass(frozen=True, slots=True)
class Job:
    """What every worker of a run is told: the same for all but their index."""

    contender: str
    policy_text: str
    policy_file: str
    endpoints: Endpoints
    load: Load
    duration: float
    drain: float
    seed: int
    redis: str | None = None
    namespace: str = "router-chaos"


def job_policy(job: Job, policy: Policy | None = None) -> Policy:
    """The job's policy (parsed from its text unless given), pinned to the upstream and the run's state."""
    parsed = policy or parse_policy(job.policy_text, job.policy_file, env=chaos_env(job.policy_text))
    state = None
    if job.redis:
        state = StateSpec(backend="redis", url=SecretStr(job.redis), namespace=job.namespace)
    return pin_policy(parsed, job.endpoints, state)


# -- the worker side (runs in the child) ------------------------------------------------------


class _QueueSink:
    def __init__(self, events: Any) -> None:
        self._events = events

    def request(self, event: RequestEvent) -> None:
        self._events.put(("request", event))

    def transition(self, event: TransitionEvent) -> None:
        self._events.put(("transition", event))

    def status(self, event: StatusEvent) -> None:
        self._events.put(("status", event))


def work(index: int, job: Job, events: Any, start: Connection) -> None:
    """Entry point of a worker process."""
    forbid_remote_connections()
    try:
        asyncio.run(_work(index, job, events, start))
    except BaseException:
        events.put(("error", index, traceback.format_exc()))
    finally:
        events.put(("done", index))


async def _work(index: int, job: Job, events: Any, start: Connection) -> None:
    sink = _QueueSink(events)
    contender = build_contender(
        job.contender, job_policy(job), route=job.load.route, sink=sink, worker=index, seed=job.seed
    )
    try:
        await contender.start()
        events.put(("ready", index))
        origin = await asyncio.to_thread(start.recv)
        if origin is not None:  # None: the run was called off
            await drive(
                contender,
                job.load,
                duration=job.duration,
                origin=origin,
                sink=sink,
                worker=index,
                drain=job.drain,
            )
    finally:
        await contender.aclose()


# -- the parent side ----------------------------------------------------------------------------


class WorkerPool:
    """`count` worker processes running `job`; their events go to `sink`."""

    def __init__(self, count: int, job: Job, sink: Sink) -> None:
        context = multiprocessing.get_context("spawn")
        self._sink = sink
        self._events: Any = context.Queue()
        self._ready: set[int] = set()
        self._done: set[int] = set()
        self.errors: list[str] = []
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=work,
                args=(index, job, self._events, child_end),
                name=f"chaos-worker-{index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)
        self._pump = threading.Thread(target=self._read_events, name="chaos-events", daemon=True)
        self._pump.start()

    def _read_events(self) -> None:
        while len(self._done) < len(self._processes):
            try:
                kind, *rest = self._events.get(timeout=0.2)
            except queue.Empty:
                for index, process in enumerate(self._processes):
                    if not process.is_alive() and index not in self._done:
                        # Gone without a word (killed): it will send nothing more.
                        self.errors.append(f"worker {index} exited with code {process.exitcode}")
                        self._done.add(index)
                continue
            if kind == "request":
                self._sink.request(rest[0])
            elif kind == "transition":
                self._sink.transition(rest[0])
            elif kind == "status":
                self._sink.status(rest[0])
            elif kind == "ready":
                self._ready.add(rest[0])
            elif kind == "error":
                self.errors.append(f"worker {rest[0]}:\n{rest[1]}")
            elif kind == "done":
                self._done.add(rest[0])

    async def ready(self) -> None:
        """Wait until every worker can start; raise `RouterError` if one cannot."""
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self._ready) < len(self._processes):
            if self.errors:
                raise RouterError(f"a worker failed to start: {self.errors[0]}")
            if time.monotonic() > deadline:
                raise RouterError(f"the workers did not start within {READY_TIMEOUT:g} s")
            await asyncio.sleep(0.05)

    def go(self, origin: float) -> None:
        for pipe in self._pipes:
            pipe.send(origin)

    async def finished(self) -> None:
        """Wait until every worker has sent its last event."""
        await asyncio.to_thread(self._pump.join)

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError, ValueError, BrokenPipeError):
                if not pipe.closed:
                    pipe.send(None)  # a worker still waiting for the origin: the run is off
                pipe.close()
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        self._done.update(range(len(self._processes)))
        self._pump.join(5)
        self._events.close()
        self._events.join_thread()
