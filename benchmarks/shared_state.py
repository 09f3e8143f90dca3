"""What sharing state through Redis costs a worker, and how fast a trip reaches the fleet.

    python benchmarks/shared_state.py              # a table
    python benchmarks/shared_state.py --json       # exactly one JSON object on stdout

Three measurements, each against a `redis-server` this script starts on a free loopback port
(so that `INFO commandstats` counts only our commands), or against `--redis-url`:

- commands per success: `INFO commandstats` before and after N successful routed calls
  through a `Router` on the Redis backend and an instant in-process provider
  (`ScriptedProvider`), after a warm-up that includes joining the fleet (subscribe, reconcile).
  A successful call should send Redis nothing. As a check that the count sees what it should,
  a burst of 100 failed calls follows: each is reported (one script call).
- propagation: this process trips a breaker (one failed call, `fail_max: 1`); a worker in a
  child process, a `Router` on the same namespace, notes when its `on_event` hook sees it.
  Both sides read `time.time()` on the same host, so no clock skew enters. Between trips the
  breaker is closed again through the store, and both sides wait until they see it closed.
- overhead: the router's cost over the bare provider call (`ScriptedProvider.complete`), with
  the Redis backend and with the in-memory store, interleaved in the same run.

And for a request on a target with fleet `rpm`, `tpm` and a route budget (issue 10), each
against a `redis-server` of its own that it freezes (SIGSTOP) or kills:

- round trips before the call: the Redis commands a request's own task awaits before its
  provider is called (a wrapper around `RedisStore._call` counts those of the request's task;
  the leases' refills run in other tasks), and for scale every command sent per request.
- overhead with Redis hung: the p99 of the router's cost over the bare call with Redis healthy,
  then from the moment it is frozen on (the detection included).
- budget overspend: 4 worker processes send long answers (2 000 to 3 500 output tokens, no
  `max_tokens`) to a premium target until its budget (160 answers' worth) is long spent; what
  they spent on it over what the budget allowed, with Redis up, and with Redis killed once half
  the budget is gone.

Nothing here asserts a speed; see README.md for the goals and the figures of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

# The scripts run as files (python benchmarks/NAME.py): their folder is on sys.path.
from _shared import Timed, cpus, per_call_ns, percentile, report

MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
DEFAULT_CALLS = 10_000
FAILURES = 100
DEFAULT_TRIPS = 100
DEFAULT_ITERATIONS = 20_000
DEFAULT_ROUNDS = 5
# An instant provider never suspends; without a turn of the loop now and then, nothing queued
# in the background (the listener, any spawned store call) would ever run. See overhead.py.
# The commands phase keeps the listener's periodic reconcile (one EVALSHA and one PING per
# interval, 5 s by default) out of its window: it is a clock's cost, not a call's.
QUIET_RECONCILE = "60s"

# The team's goals: reported beside the figures, never asserted.
GOALS = {
    "redis_cmds_per_success": ("==", 0.0),
    "propagation_p50_ms": ("<=", 10.0),
    "propagation_p99_ms": ("<=", 50.0),
    "overhead_ratio_redis_vs_memory": ("<=", 1.2),
    "redis_roundtrips_before_call": ("==", 0.0),
    "overhead_p99_ratio_hung_vs_healthy": ("<=", 1.2),
    "budget_overspend_redis_up": ("<=", 1.05),
    "budget_overspend_redis_killed": ("<=", 1.25),
}
# The budgeted runs: answers of this many words per worker (5 characters, 1.25 tokens a word).
SPENDERS_WORDS = (1600, 2000, 2400, 2800)
ANSWERS_IN_BUDGET = 160
HUNG_FOR = 2.0  # seconds of calls with Redis frozen: 4x a store call's deadline (2 x 250 ms)
PREMIUM = {"input": 1.0, "output": 10.0}


# -- measuring -----------------------------------------------------------------------------------


def policy(url: str | None, namespace: str, *, fail_max: int = 5, reconcile: str = "5s") -> dict[str, Any]:
    """One provider (`bench`, replaced by a ScriptedProvider), one target, route `chat`."""
    data: dict[str, Any] = {
        "providers": {
            "bench": {
                "type": "openai_compatible",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "unused",
                # The rate rule stays out of the way: only `fail_max` in a row trips.
                "breaker": {
                    "fail_max": fail_max,
                    "min_calls": 10**6,
                    "reset_timeout": "60s",
                    "window": "60s",
                },
            }
        },
        "targets": {"t": {"provider": "bench", "model": MODEL}},
        "routes": {"chat": {"targets": ["t"], "retry": {"attempts": 1}}},
    }
    if url is not None:
        data["state"] = {
            "backend": "redis",
            "url": url,
            "namespace": namespace,
            "reconcile_interval": reconcile,
        }
    return data


def build_router(data: dict[str, Any], worker: str, **kwargs: Any) -> tuple[Any, Any]:
    from router import Policy, Router
    from router.testing.scripted import ScriptedProvider

    provider = ScriptedProvider("bench")
    router = Router(
        Policy.model_validate(data), providers={"bench": provider}, seed=0, worker=worker, **kwargs
    )
    return router, provider


# -- 1. Redis commands per successful call -------------------------------------------------------


async def counters(client: Any) -> tuple[dict[str, int], int]:
    """Calls per command so far (commands run inside scripts included), and connections accepted."""
    commands = await client.info("commandstats")
    stats = await client.info("stats")
    calls = {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in commands.items()}
    return calls, int(stats["total_connections_received"])


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    # The earlier reading's own two INFO calls are counted by the later one.
    delta = {name: n - before.get(name, 0) for name, n in after.items() if name != "info"}
    return {name: n for name, n in sorted(delta.items()) if n}


async def commands_per_success(url: str, namespace: str, calls: int) -> dict[str, Any]:
    import redis.asyncio

    from router import ErrorKind, RouterError
    from router.testing.scripted import Step

    # fail_max so high that the failures below never trip the breaker: each is just reported.
    data = policy(url, namespace, fail_max=10**6, reconcile=QUIET_RECONCILE)
    router, provider = build_router(data, "bench-commands")
    # One connection for every reading, opened before the first: its handshake stays outside.
    client = redis.asyncio.Redis.from_url(url)

    async def routed() -> None:
        await router.complete("chat", MESSAGES)

    async def fail(n: int) -> None:
        provider.script(MODEL, *[Step.fail(ErrorKind.SERVER_ERROR)] * n)
        for _ in range(n):
            with contextlib.suppress(RouterError):
                await router.complete("chat", MESSAGES)
        await asyncio.sleep(0.1)  # the reports, queued in the background, get to run

    try:
        # Warm-up: join the fleet (subscribe, reconcile), load the failure script, run the path.
        await router.start()
        await fail(1)
        await per_call_ns(routed, min(calls, 2000))
        await asyncio.sleep(0.05)
        before, _ = await counters(client)
        await per_call_ns(routed, calls)
        await asyncio.sleep(0.05)  # anything the calls queued in the background gets to run
        after, connections = await counters(client)
        # The counters' own check: every failure is reported. The failures come in a burst, as
        # when many requests in flight fail at once; each report in flight takes a connection.
        await fail(FAILURES)
        after_failures, connections_after = await counters(client)
    finally:
        await router.aclose()
        await client.aclose()
    assert provider.count() == 1 + min(calls, 2000) + calls + FAILURES
    successes, failures = _delta(before, after), _delta(after, after_failures)
    return {
        "calls": calls,
        "delta": successes,
        "per_success": sum(successes.values()) / calls,
        "failures_delta": failures,
        "scripts_per_failure": failures.get("evalsha", 0) / FAILURES,
        "burst_connections": connections_after - connections,
    }


# -- 2. propagation between processes ------------------------------------------------------------


def observer_main(url: str, namespace: str, conn: Connection) -> None:
    """A worker in its own process: reports each breaker transition it sees, with `time.time()`."""

    async def serve() -> None:
        from router import BreakerTransition

        def note(event: Any) -> None:
            if isinstance(event, BreakerTransition):
                conn.send((event.new, event.generation, time.time()))

        router, _ = build_router(policy(url, namespace, fail_max=1), "bench-observer", on_event=note)
        await router.start()
        conn.send(("ready", 0, time.time()))
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(conn.fileno(), done.set)  # any message, or the parent going, ends it
        await done.wait()
        loop.remove_reader(conn.fileno())
        await router.aclose()

    asyncio.run(serve())


async def receive(conn: Connection, state: str, within: float = 5.0) -> tuple[str, int, float]:
    """The observer's next transition to `state` (others are skipped)."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not await asyncio.to_thread(conn.poll, left):
            raise TimeoutError(f"the observer saw no {state!r} within {within:g}s")
        message: tuple[str, int, float] = conn.recv()
        if message[0] == state:
            return message


async def propagation(url: str, namespace: str, trips: int) -> dict[str, Any]:
    from router import BreakerTransition, ErrorKind, RouterError
    from router.testing.scripted import Step

    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    observer = context.Process(target=observer_main, args=(url, namespace, child), daemon=True)
    observer.start()
    child.close()
    closed = asyncio.Event()

    def note(event: Any) -> None:
        if isinstance(event, BreakerTransition) and event.new == "closed":
            closed.set()

    router, provider = build_router(policy(url, namespace, fail_max=1), "bench-tripper", on_event=note)
    delays: list[float] = []
    try:
        await router.start()
        await receive(conn, "ready", within=30.0)
        for _ in range(trips):
            provider.script(MODEL, Step.fail(ErrorKind.SERVER_ERROR))
            started = time.time()
            with contextlib.suppress(RouterError):
                await router.complete("chat", MESSAGES)
            _, generation, seen = await receive(conn, "open")
            delays.append(seen - started)
            closed.clear()
            await router.store.transition("t", expect_generation=generation, state="closed")
            await receive(conn, "closed")
            async with asyncio.timeout(5):
                await closed.wait()  # our own breaker too, through our listener
    finally:
        await router.aclose()
        with contextlib.suppress(OSError):
            conn.send("stop")
        observer.join(10)
        if observer.is_alive():
            observer.kill()
            observer.join()
        conn.close()
    return {
        "trips": trips,
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "max_ms": max(delays) * 1000,
    }


# -- 3. overhead: Redis backend against the in-memory store --------------------------------------


async def overhead(url: str, namespace: str, n: int, rounds: int) -> dict[str, float]:
    from router import Call

    memory, memory_provider = build_router(policy(None, namespace), "bench-memory")
    shared, shared_provider = build_router(policy(url, namespace), "bench-redis")
    bare_provider = memory_provider

    async def bare() -> None:
        await bare_provider.complete(Call(MODEL, MESSAGES, 60.0))

    async def on_memory() -> None:
        await memory.complete("chat", MESSAGES)

    async def on_redis() -> None:
        await shared.complete("chat", MESSAGES)

    calls: dict[str, Timed] = {"bare": bare, "memory": on_memory, "redis": on_redis}
    per_round: list[dict[str, float]] = []
    try:
        await memory.start()
        await shared.start()
        for call in calls.values():
            await per_call_ns(call, min(n, 2000))
        names = list(calls)
        for index in range(rounds):
            shift = index % len(names)  # no call always runs first
            samples: dict[str, list[int]] = {}
            for name in names[shift:] + names[:shift]:
                memory_provider.calls.clear()  # the script keeps every call
                shared_provider.calls.clear()
                gc.collect()
                samples[name] = await per_call_ns(calls[name], n)
            per_round.append(
                {
                    f"{name}_{label}": percentile(durations, q) / 1000
                    for name, durations in samples.items()
                    for label, q in (("p50", 0.50), ("p99", 0.99))
                }
            )
    finally:
        await memory.aclose()
        await shared.aclose()
    figures = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    figures["overhead_memory"] = figures["memory_p50"] - figures["bare_p50"]
    figures["overhead_redis"] = figures["redis_p50"] - figures["bare_p50"]
    return figures


# -- 4. limits and budgets, leased ----------------------------------------------------------------


def limited_policy(url: str, namespace: str) -> dict[str, Any]:
    """`policy`, with fleet rpm and tpm on target `t` (premium) and a route budget over it; `cheap`
    (economy) is the route's cheapest tier, which a route budget spares. The limits are far above
    what the benchmark asks, so every request is answered by `t` and only the mechanism is timed."""
    data = policy(url, namespace)
    data["providers"]["bench"]["limits"] = {"rpm": 10**9, "tpm": 10**12}
    data["targets"]["t"].update(price={"input": 1.0, "output": 2.0}, tier="premium")
    data["targets"]["cheap"] = {"provider": "bench", "model": "cheap", "tier": "economy"}
    data["routes"]["chat"]["targets"] = ["t", "cheap"]
    data["budgets"] = {"chat-daily": {"route": "chat", "usd": 10**6, "per": "day"}}
    return data


async def roundtrips_before_call(url: str, namespace: str, calls: int) -> dict[str, Any]:
    """The Redis commands each request's own task awaits before its provider call."""
    import redis.asyncio

    from router.state.redis import RedisStore

    router, provider = build_router(limited_policy(url, namespace), "bench-roundtrips")
    request: dict[str, Any] = {"task": None, "commands": 0}
    seen: list[int] = []
    original_call, original_complete = RedisStore._call, provider.complete

    async def counted(self: Any, command: Any) -> Any:
        if asyncio.current_task() is request["task"]:
            request["commands"] += 1
        return await original_call(self, command)

    async def witnessed(call: Any) -> Any:
        seen.append(request["commands"])
        return await original_complete(call)

    async def routed() -> None:
        request["task"], request["commands"] = asyncio.current_task(), 0
        result = await router.complete("chat", MESSAGES)
        assert result.target == "t", result.attempts

    client = redis.asyncio.Redis.from_url(url)
    RedisStore._call = counted  # type: ignore[method-assign]
    provider.complete = witnessed
    try:
        await router.start()
        await per_call_ns(routed, 200)  # warm: leases sized to the rate
        seen.clear()
        before, _ = await counters(client)
        await per_call_ns(routed, calls)
        after, _ = await counters(client)
    finally:
        RedisStore._call = original_call  # type: ignore[method-assign]
        await router.aclose()
        await client.aclose()
    commands = sum(_delta(before, after).values())
    return {
        "calls": len(seen),
        "mean": statistics.fmean(seen),
        "max": max(seen),
        "commands_per_request": commands / calls,
    }


async def hung_overhead(server: DedicatedRedis, namespace: str, n: int) -> dict[str, float]:
    """The p99 of the router's cost over the bare call, Redis healthy, then frozen (from the freeze on)."""
    from router import Call

    router, provider = build_router(limited_policy(server.url, namespace), "bench-hung")

    async def bare() -> None:
        await provider.complete(Call(MODEL, MESSAGES, 60.0))

    async def routed() -> None:
        await router.complete("chat", MESSAGES)

    try:
        await router.start()
        await per_call_ns(routed, min(n, 2000))
        provider.calls.clear()
        gc.collect()
        bare_p50 = percentile(await per_call_ns(bare, n), 0.5) / 1000
        provider.calls.clear()
        gc.collect()
        healthy = await per_call_ns(routed, n)
        provider.calls.clear()
        gc.collect()
        server.freeze()
        started = time.monotonic()
        hung: list[int] = []
        while time.monotonic() - started < HUNG_FOR:  # past every deadline: the detection included
            provider.calls.clear()
            hung += await per_call_ns(routed, n)
        hung_for = time.monotonic() - started
    finally:
        server.thaw()
        await router.aclose()
    return {
        "healthy_p99_us": percentile(healthy, 0.99) / 1000 - bare_p50,
        "hung_p99_us": percentile(hung, 0.99) / 1000 - bare_p50,
        "hung_max_us": max(hung) / 1000 - bare_p50,
        "hung_seconds": hung_for,
        "bare_p50_us": bare_p50,
    }


def spender_policy(url: str, namespace: str, usd: float) -> dict[str, Any]:
    """Route `chat`: `primary` (premium, with the fleet's budget `premium-daily`), then `backup`."""
    provider = {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": "unused"}
    return {
        "providers": {"bench": provider, "spare": provider},
        "targets": {
            "primary": {"provider": "bench", "model": "primary", "price": PREMIUM, "tier": "premium"},
            "backup": {"provider": "spare", "model": "backup", "price": {"input": 0.01, "output": 0.01}},
        },
        "routes": {"chat": {"targets": ["primary", "backup"], "retry": {"attempts": 1}}},
        "budgets": {"premium-daily": {"tier": "premium", "usd": usd, "per": "day"}},
        "state": {"backend": "redis", "url": url, "namespace": namespace},
    }


def spender_main(url: str, namespace: str, usd: float, words: int, conn: Connection) -> None:
    """A worker process: 4 requests at a time on `chat` until told to stop; what it spent on `primary`."""

    async def serve() -> None:
        from router import Policy, Router
        from router.testing.scripted import ScriptedProvider, Step

        answer = Step.reply("word " * words, delay=0.1)  # long, and no max_tokens asked
        spare = Step.reply("short", delay=0.1)
        providers = {
            "bench": ScriptedProvider("bench", default=answer),
            "spare": ScriptedProvider("spare", default=spare),
        }
        router = Router(Policy.model_validate(spender_policy(url, namespace, usd)), providers=providers)
        await router.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        spent, answers = 0.0, {"primary": 0, "backup": 0}

        async def client() -> None:
            nonlocal spent
            while not stop.is_set():
                result = await router.complete("chat", MESSAGES)
                answers[result.target] += 1
                if result.target == "primary":
                    spent += result.cost_usd

        conn.send("ready")
        await asyncio.gather(*(client() for _ in range(4)))
        loop.remove_reader(conn.fileno())
        conn.recv()
        conn.send((spent, answers))
        await router.aclose()

    asyncio.run(serve())


async def budget_overspend(server: DedicatedRedis, namespace: str, kill_at: float | None) -> dict[str, Any]:
    """4 spenders until the budget is long spent; with `kill_at`, Redis is killed once that share of
    the budget is gone. What they spent over what the budget allowed for the run."""
    import redis.asyncio

    mean_tokens = statistics.fmean(SPENDERS_WORDS) * 5 / 4
    usd = ANSWERS_IN_BUDGET * mean_tokens * PREMIUM["output"] / 1e6
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for words in SPENDERS_WORDS:
        conn, child = context.Pipe()
        arguments = (server.url, namespace, usd, words, child)
        process = context.Process(target=spender_main, args=arguments, daemon=True)
        process.start()
        child.close()
        pipes.append(conn)
        processes.append(process)
    client = redis.asyncio.Redis.from_url(server.url)
    key = f"{namespace}:bucket:budget:premium-daily"
    try:
        for conn in pipes:
            await receive_ready(conn)
        started = time.monotonic()
        killed_after = None
        while True:  # until the fleet's bucket is spent (or, for the kill, spent down to kill_at)
            level = await client.hget(key, "level")
            left = usd if level is None else float(level)
            held = sum(map(float, await client.hvals(f"{namespace}:held:budget:premium-daily")))
            if kill_at is not None and usd - left - held >= usd * kill_at:  # spent, not just leased
                server.kill()
                killed_after = time.monotonic() - started
                break
            if kill_at is None and left <= usd * 0.01:
                break
            if time.monotonic() - started > 60:
                raise RuntimeError("the budget was never spent")
            await asyncio.sleep(0.005)
        await asyncio.sleep(3.0)  # past the budget (or the kill): every spender keeps asking
        for conn in pipes:
            conn.send("stop")
        results = [await receive_result(conn) for conn in pipes]
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        for process in processes:
            process.join(20)
            if process.is_alive():
                process.kill()
                process.join()
    spent = sum(spent for spent, _ in results)
    allowed = usd * (1 + elapsed / 86400)
    return {
        "ratio": spent / allowed,
        "usd": usd,
        "spent": spent,
        "primary_answers": sum(answers["primary"] for _, answers in results),
        "backup_answers": sum(answers["backup"] for _, answers in results),
        "killed_after_s": killed_after,
    }


async def receive_ready(conn: Connection, within: float = 60.0) -> None:
    if not await asyncio.to_thread(conn.poll, within) or conn.recv() != "ready":
        raise RuntimeError("a spender did not start")


async def receive_result(conn: Connection, within: float = 60.0) -> Any:
    if not await asyncio.to_thread(conn.poll, within):
        raise RuntimeError("a spender did not stop")
    return conn.recv()


# -- Redis ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DedicatedRedis:
    """A `redis-server` of our own on a free loopback port, persisting nothing, that we may freeze
    (SIGSTOP: connections stay open and nothing answers), thaw and kill."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = _free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.01)

    def freeze(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """As a crash would: SIGKILL, no goodbye to clients."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def own_redis() -> Iterator[DedicatedRedis]:
    with tempfile.TemporaryDirectory() as directory:
        server = DedicatedRedis(directory)
        try:
            yield server
        finally:
            server.kill()


@contextlib.contextmanager
def dedicated_redis() -> Iterator[str]:
    """A `redis-server` of our own on a free loopback port, persisting nothing; yields its URL."""
    with own_redis() as server:
        yield server.url


async def server_version(url: str) -> str:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


async def forget(url: str, namespace: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- the run ---------------------------------------------------------------------------------------


async def measure(url: str, calls: int, trips: int, iterations: int, rounds: int) -> dict[str, Any]:
    namespace = f"bench-shared-state:{uuid.uuid4().hex[:8]}"
    try:
        commands = await commands_per_success(url, f"{namespace}:commands", calls)
        spread = await propagation(url, f"{namespace}:propagation", trips)
        cost = await overhead(url, f"{namespace}:overhead", iterations, rounds)
        version = await server_version(url)
    finally:
        await forget(url, namespace)
    ratio = cost["overhead_redis"] / max(cost["overhead_memory"], 1.0)

    def us(value: float) -> float:
        return round(value, 2)

    return {
        "redis_cmds_per_success": commands["per_success"],
        "redis_cmds_delta": commands["delta"],
        "success_calls": commands["calls"],
        "redis_scripts_per_failure": commands["scripts_per_failure"],
        "redis_cmds_failures_delta": commands["failures_delta"],
        "failure_burst_new_connections": commands["burst_connections"],
        "failure_burst_size": FAILURES,
        "propagation_p50_ms": round(spread["p50_ms"], 3),
        "propagation_p99_ms": round(spread["p99_ms"], 3),
        "propagation_max_ms": round(spread["max_ms"], 3),
        "propagation_method": (
            "time.time() before the request whose failure trips the breaker (this process) to "
            "time.time() in the observer's on_event hook (another process, same host)"
        ),
        "trips": spread["trips"],
        "overhead_p50_us_memory": us(cost["overhead_memory"]),
        "overhead_p50_us_redis": us(cost["overhead_redis"]),
        "overhead_ratio_redis_vs_memory": round(ratio, 3),
        "bare_p50_us": us(cost["bare_p50"]),
        "memory_p50_us": us(cost["memory_p50"]),
        "redis_p50_us": us(cost["redis_p50"]),
        "memory_p99_us": us(cost["memory_p99"]),
        "redis_p99_us": us(cost["redis_p99"]),
        "goals": {key: f"{op} {value:g}" for key, (op, value) in GOALS.items()},
        "redis_version": version,
        "python": platform.python_version(),
        "machine": f"{cpus()} cores, {platform.machine()}, {platform.system()}",
        "cpu_count": cpus(),
        "iterations": iterations,
        "rounds": rounds,
    }


def measure_leases(calls: int, iterations: int) -> dict[str, Any]:
    """The leased limits and budget, each measurement on a Redis of its own (frozen, or killed)."""
    namespace = f"bench-leases:{uuid.uuid4().hex[:8]}"
    with own_redis() as server:
        trips = asyncio.run(roundtrips_before_call(server.url, f"{namespace}:roundtrips", calls))
        hung = asyncio.run(hung_overhead(server, f"{namespace}:hung", iterations))
    with own_redis() as server:
        up = asyncio.run(budget_overspend(server, f"{namespace}:up", kill_at=None))
    with own_redis() as server:
        killed = asyncio.run(budget_overspend(server, f"{namespace}:killed", kill_at=0.5))
    ratio = hung["hung_p99_us"] / max(hung["healthy_p99_us"], 1.0)
    return {
        "redis_roundtrips_before_call": trips["mean"],
        "redis_roundtrips_before_call_max": trips["max"],
        "redis_cmds_per_limited_request": round(trips["commands_per_request"], 4),
        "limited_calls": trips["calls"],
        "overhead_p99_us_healthy": round(hung["healthy_p99_us"], 2),
        "overhead_p99_us_hung": round(hung["hung_p99_us"], 2),
        "overhead_p99_ratio_hung_vs_healthy": round(ratio, 3),
        "overhead_max_us_hung": round(hung["hung_max_us"], 2),
        "hung_seconds": round(hung["hung_seconds"], 2),
        "budget_overspend_redis_up": round(up["ratio"], 3),
        "budget_overspend_redis_killed": round(killed["ratio"], 3),
        "budget_usd": round(up["usd"], 4),
        "budget_answers": {
            "redis_up": {"primary": up["primary_answers"], "backup": up["backup_answers"]},
            "redis_killed": {"primary": killed["primary_answers"], "backup": killed["backup_answers"]},
        },
        "budget_killed_after_s": killed["killed_after_s"],
    }


def run(redis_url: str | None, calls: int, trips: int, iterations: int, rounds: int) -> dict[str, Any]:
    if redis_url is not None:
        result = asyncio.run(measure(redis_url, calls, trips, iterations, rounds))
        result["redis"] = "given (--redis-url): other clients' commands would count too"
    else:
        with dedicated_redis() as url:
            result = asyncio.run(measure(url, calls, trips, iterations, rounds))
        result["redis"] = "dedicated redis-server on loopback, started by the benchmark"
    result.update(measure_leases(calls, iterations))
    return result


def render_table(result: dict[str, Any]) -> str:
    rows = [
        ("Redis commands per successful call", "redis_cmds_per_success"),
        ("trip propagation p50 (ms)", "propagation_p50_ms"),
        ("trip propagation p99 (ms)", "propagation_p99_ms"),
        ("trip propagation max (ms)", "propagation_max_ms"),
        ("router overhead p50, memory store (us)", "overhead_p50_us_memory"),
        ("router overhead p50, Redis backend (us)", "overhead_p50_us_redis"),
        ("overhead ratio, Redis / memory", "overhead_ratio_redis_vs_memory"),
        ("fleet rpm+tpm+budget: Redis trips before call", "redis_roundtrips_before_call"),
        ("  overhead p99, Redis healthy (us)", "overhead_p99_us_healthy"),
        ("  overhead p99, Redis hung (us)", "overhead_p99_us_hung"),
        ("  overhead p99 ratio, hung / healthy", "overhead_p99_ratio_hung_vs_healthy"),
        ("budget spent / allowed, 4 workers, Redis up", "budget_overspend_redis_up"),
        ("  and with Redis killed half-way", "budget_overspend_redis_killed"),
    ]
    lines = [f"{'figure':<46} {'value':>12}  goal"]
    for label, key in rows:
        goal = result["goals"].get(key, "")
        lines.append(f"{label:<46} {result[key]:>12,.3f}  {goal}")
    lines.append("")
    lines.append(
        f"commands seen over {result['success_calls']:,} calls: {result['redis_cmds_delta'] or 'none'}"
    )
    lines.append(
        f"and over a burst of {FAILURES} failed calls (the counters' check): "
        f"{result['redis_scripts_per_failure']:g} script call per failure, "
        f"{result['failure_burst_new_connections']} new connections, {result['redis_cmds_failures_delta']}"
    )
    lines.append(f"propagation: {result['trips']} trips; {result['propagation_method']}")
    lines.append(
        f"overhead: {result['iterations']:,} calls per batch, median of {result['rounds']} rounds; "
        f"bare {result['bare_p50_us']} us, memory {result['memory_p50_us']} us, "
        f"Redis {result['redis_p50_us']} us (p50)"
    )
    lines.append(
        f"leases: {result['limited_calls']:,} limited calls sent "
        f"{result['redis_cmds_per_limited_request']:g} Redis commands each (refills, in the background); "
        f"with Redis frozen for {result['hung_seconds']:g} s the slowest call cost "
        f"{result['overhead_max_us_hung']:,.0f} us"
    )
    lines.append(
        f"budget: ${result['budget_usd']:g} ({ANSWERS_IN_BUDGET} answers of ~2 700 tokens); answers "
        f"{result['budget_answers']}; Redis killed {result['budget_killed_after_s']:.2f} s in"
    )
    lines.append(
        f"python {result['python']}, {result['machine']}, Redis {result['redis_version']} ({result['redis']})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument(
        "--redis-url",
        help="use this Redis instead of starting one (its other clients' commands count too)",
    )
    parser.add_argument(
        "--calls", type=int, default=DEFAULT_CALLS, help="successful calls counted (default %(default)s)"
    )
    parser.add_argument("--trips", type=int, default=DEFAULT_TRIPS, help="trips timed (default %(default)s)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help="overhead calls per batch (default %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="overhead rounds, median reported (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if min(args.calls, args.trips, args.iterations, args.rounds) < 1:
        parser.error("--calls, --trips, --iterations and --rounds must be at least 1")

    report(
        args.json,
        lambda: run(args.redis_url, args.calls, args.trips, args.iterations, args.rounds),
        render_table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
