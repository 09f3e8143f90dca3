"""Fleet workers in processes of their own, driven by the test process over pipes.

Each `WorkerProcess` is a spawned interpreter running one `Router` (rebuilt per test from a
policy the test sends) on its own event loop. The test process sends commands (`build`, `ask`,
`traffic`, `stop_traffic`, `logs`, ...) and gets one reply per command. Every breaker
transition a worker sees goes to a queue shared by the whole fleet, stamped with `time.time()`
in the worker, so the test can measure how long a trip takes to reach the others.

Nothing here is a fixture: `tests/fleet/test_multiprocess.py` owns the processes' lifetimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

# Replies longer than this mean a worker is stuck: the test kills it rather than hang.
REPLY_TIMEOUT = 15.0


# -- the worker side (runs in the child) ------------------------------------------------------


def run_worker(name: str, conn: Connection, events: Any) -> None:
    """Entry point of a worker process: serve commands until told to exit or the parent goes."""
    events.cancel_join_thread()  # never hang at exit on events nobody reads any more
    asyncio.run(_Worker(name, conn, events).serve())


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class _Worker:
    def __init__(self, name: str, conn: Connection, events: Any) -> None:
        self.name = name
        self.conn = conn
        self.events = events
        self.router: Any = None
        self.tag = ""
        self.log = _Captured()
        logger = logging.getLogger("router")
        logger.addHandler(self.log)
        logger.setLevel(logging.INFO)
        self.traffic: list[asyncio.Task[None]] = []
        self.records: list[dict[str, Any]] = []
        self.stopping = False

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def readable() -> None:
            try:
                inbox.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                loop.remove_reader(self.conn.fileno())
                inbox.put_nowait({"op": "exit"})  # the test process is gone

        loop.add_reader(self.conn.fileno(), readable)
        try:
            while True:
                command = await inbox.get()
                op = command.pop("op")
                if op == "exit":
                    break
                try:
                    value = await getattr(self, f"do_{op}")(**command)
                except Exception:
                    reply = {"ok": False, "error": traceback.format_exc()}
                else:
                    reply = {"ok": True, "value": value}
                with contextlib.suppress(OSError):
                    self.conn.send(reply)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.conn.fileno())
            await self._close_router()

    def _note(self, event: Any) -> None:
        from router import BreakerTransition

        if not isinstance(event, BreakerTransition):
            return
        self.events.put(
            {
                "worker": self.name,
                "tag": self.tag,
                "target": event.target,
                "old": event.old,
                "new": event.new,
                "generation": event.generation,
                "remote": event.remote,
                "time": time.time(),
            }
        )

    async def _close_router(self) -> None:
        await self.do_stop_traffic()
        router, self.router = self.router, None
        if router is not None:
            await router.aclose()

    # -- commands -----------------------------------------------------------------------------

    async def do_build(self, policy: dict[str, Any], tag: str, seed: int = 0) -> str:
        """Replace the router with one built from `policy`, started (joined to the fleet)."""
        from router import Policy, Router

        await self._close_router()
        self.log.lines.clear()
        self.tag = tag
        self.router = Router(Policy.model_validate(policy), worker=self.name, seed=seed, on_event=self._note)
        await self.router.start()
        return str(self.router.worker)

    async def do_close(self) -> None:
        await self._close_router()

    async def _ask_once(self, route: str, deadline: float | None) -> dict[str, Any]:
        from router import RouterError

        started = time.time()
        try:
            result = await self.router.complete(route, [{"role": "user", "content": "hi"}], deadline=deadline)
        except RouterError as error:
            trail = [(a.target, str(a.outcome)) for a in getattr(error, "attempts", ())]
            return {
                "start": started,
                "end": time.time(),
                "target": None,
                "attempts": trail,
                "error": str(error),
                "cost": 0.0,
            }
        trail = [(a.target, str(a.outcome)) for a in result.attempts]
        return {
            "start": started,
            "end": time.time(),
            "target": result.target,
            "attempts": trail,
            "error": None,
            "cost": result.cost_usd,
        }

    async def do_ask(
        self, n: int = 1, route: str = "chat", pause: float = 0.0, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """`n` requests one after another; what each returned."""
        results = []
        for _ in range(n):
            results.append(await self._ask_once(route, deadline))
            if pause:
                await asyncio.sleep(pause)
        return results

    async def do_traffic(
        self, concurrency: int = 1, route: str = "chat", pause: float = 0.0, deadline: float | None = None
    ) -> None:
        """Send requests in the background (`concurrency` loops) until `stop_traffic`."""
        self.stopping = False

        async def loop() -> None:
            while not self.stopping:
                self.records.append(await self._ask_once(route, deadline))
                await asyncio.sleep(pause)

        self.traffic = [asyncio.create_task(loop()) for _ in range(concurrency)]

    async def do_stop_traffic(self) -> list[dict[str, Any]]:
        """Let each traffic loop finish its request in flight; every request's result."""
        self.stopping = True
        await asyncio.gather(*self.traffic, return_exceptions=True)
        self.traffic = []
        records, self.records = self.records, []
        return records

    async def do_logs(self) -> list[str]:
        return list(self.log.lines)

    async def do_breakers(self, route: str = "chat") -> dict[str, str]:
        """This worker's own view of the route's breakers (no store call)."""
        return {plan.name: state for plan, state in self.router.candidates(route)}

    async def do_close_breaker(self, target: str) -> str:
        """Close `target`'s breaker for the fleet, as a successful probe would."""
        record = (await self.router.store.snapshot()).breakers.get(target)
        if record is None:
            return "closed"
        moved = await self.router.store.transition(
            target, expect_generation=record.generation, state="closed"
        )
        return "closed" if moved is not None else "moved"


# -- the test side ----------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker's command raised, or it did not answer in time."""


class WorkerProcess:
    """One spawned worker and the pipe to it."""

    def __init__(self, context: Any, name: str, events: Any) -> None:
        self.name = name
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=run_worker, args=(name, child, events), name=f"fleet-{name}", daemon=True
        )
        self.process.start()
        child.close()
        self.pending = 0

    def send(self, op: str, **arguments: Any) -> None:
        self.conn.send({"op": op, **arguments})
        self.pending += 1

    def reply(self, timeout: float = REPLY_TIMEOUT) -> Any:
        if not self.conn.poll(timeout):
            raise WorkerError(f"worker {self.name} did not answer within {timeout:g}s")
        answer = self.conn.recv()
        self.pending -= 1
        if not answer["ok"]:
            raise WorkerError(f"worker {self.name} failed:\n{answer['error']}")
        return answer["value"]

    def call(self, op: str, timeout: float = REPLY_TIMEOUT, **arguments: Any) -> Any:
        self.send(op, **arguments)
        return self.reply(timeout)

    def stop(self) -> None:
        """Ask it to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send({"op": "exit"})
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class Fleet:
    """Several worker processes and the queue their breaker transitions arrive on."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.events_queue = context.Queue()
        self.workers = [WorkerProcess(context, f"w{i}", self.events_queue) for i in range(1, size + 1)]
        self.active = self.workers
        self.events: list[dict[str, Any]] = []
        self.tag = ""

    def __getitem__(self, index: int) -> WorkerProcess:
        return self.active[index]

    def __len__(self) -> int:
        return len(self.active)

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(self.active)

    def all(self, op: str, timeout: float = REPLY_TIMEOUT, **arguments: Any) -> list[Any]:
        """The same command on every worker at once; their replies in worker order."""
        for worker in self.active:
            worker.send(op, **arguments)
        return [worker.reply(timeout) for worker in self.active]

    def build(self, policies: list[dict[str, Any]], tag: str) -> None:
        """A fresh router in the first len(policies) workers (policy i for worker i), the rest
        idle; old events forgotten."""
        self.tag = tag
        self.active = self.workers[: len(policies)]
        for index, (worker, policy) in enumerate(zip(self.active, policies, strict=True)):
            worker.send("build", policy=policy, tag=tag, seed=index)
        for worker in self.active:
            worker.reply()
        self._pull()
        self.events = [e for e in self.events if e["tag"] == tag]

    def _pull(self) -> None:
        while True:
            try:
                self.events.append(self.events_queue.get_nowait())
            except queue.Empty:
                return

    def wait_events(
        self, match: Callable[[dict[str, Any]], bool], count: int, within: float = 5.0
    ) -> list[dict[str, Any]]:
        """The first `count` transitions (of this test) that `match`; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = [e for e in self.events if e["tag"] == self.tag and match(e)]
            if len(found) >= count:
                return found[:count]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{len(found)} of {count} matching transitions within {within:g}s: {found}"
                )
            with contextlib.suppress(queue.Empty):
                self.events.append(self.events_queue.get(timeout=min(left, 0.05)))

    def reset(self) -> None:
        """Close every router (between tests); a worker that does not answer is replaced by force."""
        for worker in self.workers:
            if worker.process.is_alive():
                # Replies to commands the test never collected come first.
                with contextlib.suppress(Exception):
                    while worker.pending:
                        worker.reply(timeout=5)
                with contextlib.suppress(Exception):
                    worker.call("close", timeout=10)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.events_queue.close()
        self.events_queue.cancel_join_thread()

    def healthy(self) -> bool:
        return all(worker.process.is_alive() for worker in self.workers)


def eventually(condition: Callable[[], Any], within: float = 5.0, step: float = 0.01) -> Any:
    """Poll `condition()` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within:g}s")
        time.sleep(step)


# -- a Redis of the test's own ------------------------------------------------------------------
