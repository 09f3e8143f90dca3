"""What the benchmark scripts share: timing, percentiles, a fake upstream in a child process."""

from __future__ import annotations

import asyncio
import contextlib
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
