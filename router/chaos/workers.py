"""Worker processes: each sends the whole load through a contender of its own.

Workers are spawned interpreters. Each parses the policy again, pins it to the fake upstream
(sharing Redis state when the run has a URL), builds its contender and says it is ready; the
parent then sends every worker the same origin (a monotonic time, which is system-wide, so
all processes and the fake upstream's fault windows agree on it). Events come back on a pipe
per worker and land in the parent's `Recording` as they happen, so live displays see them.

Pipes, not a `multiprocessing.Queue`: a queue holds named semaphores, which a parent stopped
by a signal (SIGTERM from `timeout` or a supervisor) never unlinks, and Python's resource
tracker then warns of "leaked semaphore objects". A pipe is only file descriptors, which the
system closes however a process ends.
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
from multiprocessing.connection import Connection, wait
from typing import Any, cast

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


class _PipeSink:
    """Sends each event to the parent from a thread of its own, as a `multiprocessing.Queue` does,
    so a parent slow to read never holds the worker's loop; once the parent is gone (killed), the
    events go nowhere, quietly."""

    def __init__(self, events: Connection) -> None:
        self._events = events
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send, name="chaos-events", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._events.send(message)
            except (OSError, ValueError):  # BrokenPipeError: nobody reads any more
                return

    def put(self, message: tuple[Any, ...]) -> None:
        self._queue.put(message)

    def close(self) -> None:
        """Send what is queued, then close the pipe."""
        self._queue.put(None)
        self._sender.join(10)
        self._events.close()

    def request(self, event: RequestEvent) -> None:
        self.put(("request", event))

    def transition(self, event: TransitionEvent) -> None:
        self.put(("transition", event))

    def status(self, event: StatusEvent) -> None:
        self.put(("status", event))


def work(index: int, job: Job, events: Connection, start: Connection) -> None:
    """Entry point of a worker process."""
    forbid_remote_connections()
    sink = _PipeSink(events)
    try:
        asyncio.run(_work(index, job, sink, start))
    except BaseException:
        sink.put(("error", index, traceback.format_exc()))
    finally:
        sink.put(("done", index))
        sink.close()


async def _work(index: int, job: Job, sink: _PipeSink, start: Connection) -> None:
    contender = build_contender(
        job.contender, job_policy(job), route=job.load.route, sink=sink, worker=index, seed=job.seed
    )
    try:
        await contender.start()
        sink.put(("ready", index))
        origin = await asyncio.to_thread(start.recv)
        if origin is not None:  # None: the run was called off
            _stop_when_told(start)
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


def _stop_when_told(start: Connection) -> None:
    """Cancel the current task when the parent calls the run off (None) or is gone (end of pipe).

    Without this, a worker whose parent was killed would send its whole load to nobody. The
    watcher is a daemon thread, not the loop's executor: after a run that ended well it is still
    waiting, and must not hold the worker's exit.
    """
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            start.recv()
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over anyway
            loop.call_soon_threadsafe(task.cancel)

    threading.Thread(target=watch, name="chaos-stop", daemon=True).start()


# -- the parent side ----------------------------------------------------------------------------


class WorkerPool:
    """`count` worker processes running `job`; their events go to `sink`."""

    def __init__(self, count: int, job: Job, sink: Sink) -> None:
        context = multiprocessing.get_context("spawn")
        self._sink = sink
        self._ready: set[int] = set()
        self._done: set[int] = set()
        self._closing = False
        self.errors: list[str] = []
        self._pipes: list[Connection] = []  # the origin, to each worker
        self._events: dict[Connection, int] = {}  # each worker's events, to the pump (which closes them)
        self._processes: list[Any] = []
        for index in range(count):
            origin_reader, origin_writer = context.Pipe(duplex=False)
            events_reader, events_writer = context.Pipe(duplex=False)
            process = context.Process(
                target=work,
                args=(index, job, events_writer, origin_reader),
                name=f"chaos-worker-{index}",
                daemon=True,
            )
            process.start()
            origin_reader.close()
            events_writer.close()
            self._pipes.append(origin_writer)
            self._events[events_reader] = index
            self._processes.append(process)
        self._pump = threading.Thread(target=self._read_events, name="chaos-events", daemon=True)
        self._pump.start()

    def _read_events(self) -> None:
        readers = dict(self._events)
        try:
            while readers:
                for ready in wait(list(readers)):
                    reader = cast(Connection, ready)
                    index = readers[reader]
                    try:
                        message = reader.recv()
                    except (EOFError, OSError):  # gone without a word (killed): nothing more to come
                        del readers[reader]
                        if index not in self._done and not self._closing:
                            process = self._processes[index]
                            process.join(1)
                            self.errors.append(f"worker {index} exited with code {process.exitcode}")
                        self._done.add(index)
                        continue
                    if message[0] == "done":
                        del readers[reader]
                    self._dispatch(message)
        finally:
            for reader in self._events:
                reader.close()

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, *rest = message
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
        self._closing = True
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
        self._pump.join(5)  # every worker has ended, so every pipe is at its end
