"""What the benchmark scripts share: timing, percentiles, rates over rotating rounds, the shared options
and output, a fake upstream in a child process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from router.estimates import percentile

Timed = Callable[[], Awaitable[Any]]

# An instant provider never suspends, so without a yield now and then the loop never runs and
# each call's cancelled deadline timer piles up in its heap. Real providers suspend every call.
YIELD_EVERY = 64


def percentile_us(samples_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in microseconds."""
    return percentile(samples_ns, q) / 1000.0


async def per_call_ns(call: Timed, n: int) -> list[int]:
    """Duration of each of `n` sequential calls, in nanoseconds."""
    clock = time.perf_counter_ns
    durations = [0] * n
    for i in range(n):
        start = clock()
        await call()
        durations[i] = clock() - start
        if not i % YIELD_EVERY:
            await asyncio.sleep(0)  # untimed
    return durations


@contextlib.contextmanager
def upstream_process(main: str) -> Iterator[str]:
    """Run `main` (Python code that serves a FakeUpstream with `run_forever`) in a child process,
    so the server does not share the benchmark's GIL; yields its base URL."""
    child = subprocess.Popen([sys.executable, "-c", main], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"the fake upstream did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        child.send_signal(signal.SIGINT)  # run_forever stops the server cleanly on Ctrl-C
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def quiet_litellm() -> Any:
    """litellm kept off the network (the cost map read from the package, no telemetry, no callbacks).
    Raises ImportError without litellm."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # read at import: no cost-map download
    os.environ["LITELLM_TELEMETRY"] = "False"
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    return litellm


async def drain_litellm() -> None:
    """Run litellm's queued logging coroutines and stop its worker, so none is left never awaited."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:  # another litellm version: its leftovers only cost a warning
        return
    await GLOBAL_LOGGING_WORKER.clear_queue()
    await GLOBAL_LOGGING_WORKER.stop()


async def units_per_second(
    call: Callable[[], Awaitable[int]], concurrency: int, duration: float, warmup: float
) -> tuple[float, float]:
    """Units (calls, chunks: what each `call` returns it did) per second by `concurrency` tasks
    calling in a loop for `duration` seconds, and per second of this process's CPU time.

    The window opens after `warmup` seconds (connections opened, caches filled) and every task
    keeps calling until it closes, so the upstream sees `concurrency` requests in flight throughout.
    A failed call ends the measurement with its exception: a figure is never made of errors.
    """
    done = 0
    running = True

    async def worker() -> None:
        nonlocal done
        while running:
            units = await call()  # not `done += await call()`: that reads `done` before the await
            done += units

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await _sleep_unless_failed(tasks, warmup)
        start, cpu, before = time.perf_counter(), time.process_time(), done
        await _sleep_unless_failed(tasks, duration)
        elapsed, cpu, after = time.perf_counter() - start, time.process_time() - cpu, done
    finally:
        running = False
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return (after - before) / elapsed, (after - before) / cpu


async def _sleep_unless_failed(tasks: list[asyncio.Task[None]], seconds: float) -> None:
    finished, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in finished:
        task.result()  # raises what the worker raised


async def rotating_rounds(
    names: Sequence[str], rounds: int, measure: Callable[[str], Awaitable[tuple[float, float]]]
) -> list[dict[str, tuple[float, float]]]:
    """Per round, `measure(name)` of each contender, in an order that rotates by round (so that
    none always runs first or last), after a garbage collection."""
    per_round = []
    for index in range(rounds):
        shift = index % len(names)
        figures = {}
        for name in [*names[shift:], *names[:shift]]:
            gc.collect()
            figures[name] = await measure(name)
        per_round.append(figures)
    return per_round


def rate_parser(
    doc: str, concurrency: int, concurrency_help: str, duration: float, rounds: int, warmup: float
) -> argparse.ArgumentParser:
    """The options a rate benchmark shares: --json, --concurrency, --duration, --rounds."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"{concurrency_help} (default {concurrency})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help=f"seconds per measurement, after a {warmup:g} s warm-up (default {duration:g})",
    )
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"rounds; medians are reported (default {rounds})"
    )
    return parser


def report(as_json: bool, run: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], str]) -> None:
    """Print `run()`'s figures: one JSON object with `as_json`, else `render`'s table."""
    stdout = sys.stdout
    # Libraries under test may print; only our one JSON object (or table) goes to stdout.
    with contextlib.redirect_stdout(sys.stderr):
        result = run()
    print(json.dumps(result, indent=2) if as_json else render(result), file=stdout)
