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

Nothing here asserts a speed; see README.md for the goals and the figures of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import platform
import shutil
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
from _shared import Timed, cpus, per_call_ns, percentile

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
}


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


# -- Redis ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def dedicated_redis() -> Iterator[str]:
    """A `redis-server` of our own on a free loopback port, persisting nothing; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
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
        try:
            deadline = time.monotonic() + 5
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


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


def run(redis_url: str | None, calls: int, trips: int, iterations: int, rounds: int) -> dict[str, Any]:
    if redis_url is not None:
        result = asyncio.run(measure(redis_url, calls, trips, iterations, rounds))
        result["redis"] = "given (--redis-url): other clients' commands would count too"
        return result
    with dedicated_redis() as url:
        result = asyncio.run(measure(url, calls, trips, iterations, rounds))
    result["redis"] = "dedicated redis-server on loopback, started by the benchmark"
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
    ]
    lines = [f"{'figure':<42} {'value':>12}  goal"]
    for label, key in rows:
        goal = result["goals"].get(key, "")
        lines.append(f"{label:<42} {result[key]:>12,.3f}  {goal}")
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

    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # only our one JSON object (or table) goes to stdout
        result = run(args.redis_url, args.calls, args.trips, args.iterations, args.rounds)
    print(json.dumps(result, indent=2) if args.json else render_table(result), file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
