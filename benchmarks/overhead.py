"""What routing costs: a routed call against the same call made directly.

    python benchmarks/overhead.py                  # a table
    python benchmarks/overhead.py --json           # exactly one JSON object on stdout

Three measurements, each warmed up and repeated over interleaved rounds (the median round is
reported, so one noisy round does not decide a figure):

- instant: an in-process `ScriptedProvider` that answers at once, called bare
  (`provider.complete(Call(...))`) and through `Router.complete` on a one-target ordered route.
  The difference is the router's own CPU cost per request.
- loopback: a `FakeUpstream` on 127.0.0.1, called with the bare openai SDK and through the
  router's `openai_compatible` adapter. Real HTTP; the difference includes our adapter's parsing.
- litellm (when importable): `litellm.Router.acompletion` against the same upstream, interleaved
  with the bare SDK again, so its overhead over the SDK can be set beside ours. It runs as a
  phase of its own: it leaves tasks on the loop and work on an executor thread behind it.

The upstream runs in a child process: in this process it would share the GIL with the client
and its CPU time would land in every figure. Nothing here asserts a speed; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai

# The scripts run as files (python benchmarks/NAME.py): their folder is on sys.path.
from _shared import (
    YIELD_EVERY,
    Timed,
    cpus,
    drain_litellm,
    package_version,
    per_call_ns,
    percentile_us,
    quiet_litellm,
    report,
    upstream_process,
)

from router import Call, Policy, Router
from router.testing.scripted import ScriptedProvider

MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
DEFAULT_ITERATIONS = 20_000
DEFAULT_ROUNDS = 5
# A loopback call costs ~50x an instant one; this keeps a default run near 30 s on 2 cores.
LOOPBACK_SHARE = 40
# An instant provider never suspends, so without this the loop would never run: the cancelled
# timers of every call's deadline scope would pile up in its heap (20,000 of them per batch),
# which no real provider allows and which doubled the routed p99.

# The team's targets: reported beside the figures, never asserted.
TARGETS = {
    "overhead_p50_us": ("<=", 20.0),
    "overhead_p99_us": ("<=", 100.0),
    "instant_calls_per_s": (">=", 30_000.0),
    "litellm_overhead_ratio": (">", 100.0),
}

_UPSTREAM_MAIN = "from router.testing import FakeUpstream, run_forever; run_forever(FakeUpstream(seed=0))"


# -- measuring ---------------------------------------------------------------------------------


async def calls_per_second(call: Timed, n: int) -> float:
    """Sequential calls per second over a tight loop, without per-call timing."""
    start = time.perf_counter_ns()
    for i in range(n):
        await call()
        if not i % YIELD_EVERY:
            await asyncio.sleep(0)
    return n / ((time.perf_counter_ns() - start) / 1e9)


async def one_round(
    calls: dict[str, Timed], n: int, index: int, tidy: Callable[[], None]
) -> dict[str, list[int]]:
    """Per-call durations of every call in turn, `tidy()` untimed before each batch.

    The order rotates by round, so no call always runs first (or right after a collection).
    """
    names = list(calls)
    shift = index % len(names)
    samples = {}
    for name in names[shift:] + names[:shift]:
        tidy()
        gc.collect()  # every batch starts from the same heap; collections inside it still count
        samples[name] = await per_call_ns(calls[name], n)
    tidy()
    return samples


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds; overheads are taken between these medians afterwards,
    so that the reported numbers subtract to the reported overheads."""
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


# -- the three measurements --------------------------------------------------------------------


def _policy(provider: dict[str, Any]) -> Policy:
    return Policy.model_validate(
        {
            "providers": {"bench": provider},
            "targets": {"t": {"provider": "bench", "model": MODEL}},
            "routes": {"chat": {"targets": ["t"]}},
        }
    )


async def instant(n: int, rounds: int) -> dict[str, float]:
    """The router's own cost per call, over a provider that answers at once."""
    provider = ScriptedProvider("bench")
    router = Router(
        _policy({"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}),
        providers={"bench": provider},
        seed=0,
    )

    async def bare() -> None:
        await provider.complete(Call(MODEL, MESSAGES, 60.0))

    async def routed() -> None:
        await router.complete("chat", MESSAGES)

    calls: dict[str, Timed] = {"bare": bare, "routed": routed}
    for call in calls.values():
        await per_call_ns(call, min(n, 2000))
    per_round = []
    for index in range(rounds):
        samples = await one_round(calls, n, index, provider.calls.clear)  # the script keeps every call
        throughput = await calls_per_second(routed, n)
        per_round.append(
            {
                "bare_p50": percentile_us(samples["bare"], 0.50),
                "bare_p99": percentile_us(samples["bare"], 0.99),
                "router_p50": percentile_us(samples["routed"], 0.50),
                "router_p99": percentile_us(samples["routed"], 0.99),
                "calls_per_s": throughput,
            }
        )
    await router.aclose()
    figures = medians(per_round)
    figures["overhead_p50"] = figures["router_p50"] - figures["bare_p50"]
    figures["overhead_p99"] = figures["router_p99"] - figures["bare_p99"]
    return figures


async def loopback(base_url: str, n: int, rounds: int, contender: str) -> dict[str, float]:
    """The bare openai SDK and a contender ("router" or "litellm") on one loopback upstream, interleaved."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

    async def bare() -> None:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    if contender == "router":
        router = Router(_policy({"type": "openai_compatible", "base_url": base_url, "api_key": "x"}), seed=0)

        async def other() -> None:
            await router.complete("chat", MESSAGES)
    else:
        lrouter = litellm_router(base_url)

        async def other() -> None:
            await lrouter.acompletion(model="chat", messages=MESSAGES)

    calls: dict[str, Timed] = {"bare": bare, "other": other}
    per_round = []
    try:
        for call in calls.values():
            await per_call_ns(call, min(n, 50))
        for index in range(rounds):
            samples = await one_round(calls, n, index, lambda: None)
            per_round.append(
                {
                    f"{name}_{label}": percentile_us(durations, q)
                    for name, durations in samples.items()
                    for label, q in (("p50", 0.50), ("p99", 0.99))
                }
            )
    finally:
        await client.close()
        if contender == "router":
            await router.aclose()
        else:
            await drain_litellm()
    figures = medians(per_round)
    figures["overhead_p50"] = figures["other_p50"] - figures["bare_p50"]
    return figures


async def profile_instant(n: int) -> str:
    """cProfile of `n` routed calls over the instant provider: the router's hot path, by own time."""
    import cProfile
    import io
    import pstats

    provider = ScriptedProvider("bench")
    router = Router(
        _policy({"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}),
        providers={"bench": provider},
        seed=0,
    )

    async def routed() -> None:
        await router.complete("chat", MESSAGES)

    await calls_per_second(routed, min(n, 2000))
    provider.calls.clear()
    profiler = cProfile.Profile()
    profiler.enable()
    await calls_per_second(routed, n)
    profiler.disable()
    await router.aclose()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def litellm_router(base_url: str) -> Any:
    """A litellm Router over the upstream, kept off the network. Raises ImportError without litellm."""
    litellm = quiet_litellm()
    params = {"model": f"openai/{MODEL}", "api_base": base_url, "api_key": "x"}
    return litellm.Router(model_list=[{"model_name": "chat", "litellm_params": params}], num_retries=0)


# -- the run -----------------------------------------------------------------------------------


def run(
    iterations: int, loopback_iterations: int, rounds: int, *, use_litellm: bool = True
) -> dict[str, Any]:
    """Every figure, as the JSON object that `--json` prints."""
    notes: list[str] = []
    fast = asyncio.run(instant(iterations, rounds))

    uvloop_calls: float | None = None
    try:
        import uvloop
    except ImportError:
        notes.append("uvloop is not installed; instant figures are on the default asyncio loop only")
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            uvloop_calls = runner.run(instant(iterations, rounds))["calls_per_s"]

    litellm_figures: dict[str, float] | None = None
    with_litellm = use_litellm and importlib.util.find_spec("litellm") is not None
    if not use_litellm:
        notes.append("litellm skipped (--no-litellm)")
    elif not with_litellm:
        notes.append("litellm is not installed (pip install -e .[bench]); no comparison made")
    with upstream_process(_UPSTREAM_MAIN) as base_url:
        wire = asyncio.run(loopback(base_url, loopback_iterations, rounds, "router"))
        # A separate phase: litellm leaves tasks on the loop and work on an executor thread that
        # would slow everything measured beside it.
        if with_litellm:
            litellm_figures = asyncio.run(loopback(base_url, loopback_iterations, rounds, "litellm"))

    ratio = ratio_vs_instant = None
    if litellm_figures is not None:
        # Our loopback overhead may be ~0 or negative (the adapter skips the SDK's response models):
        # floor it at 1 us. Against the instant overhead (the engine alone) the ratio means more.
        ratio = litellm_figures["overhead_p50"] / max(wire["overhead_p50"], 1.0)
        ratio_vs_instant = litellm_figures["overhead_p50"] / max(fast["overhead_p50"], 1.0)
    lite = litellm_figures or {}

    def us(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "overhead_p50_us": us(fast["overhead_p50"]),
        "overhead_p99_us": us(fast["overhead_p99"]),
        "instant_calls_per_s": round(fast["calls_per_s"]),
        "instant_bare_p50_us": us(fast["bare_p50"]),
        "instant_router_p50_us": us(fast["router_p50"]),
        "instant_bare_p99_us": us(fast["bare_p99"]),
        "instant_router_p99_us": us(fast["router_p99"]),
        "instant_calls_per_s_uvloop": None if uvloop_calls is None else round(uvloop_calls),
        "loopback_bare_p50_us": us(wire["bare_p50"]),
        "loopback_router_p50_us": us(wire["other_p50"]),
        "loopback_overhead_p50_us": us(wire["overhead_p50"]),
        "loopback_bare_p99_us": us(wire["bare_p99"]),
        "loopback_router_p99_us": us(wire["other_p99"]),
        "litellm_p50_us": us(lite.get("other_p50")),
        "litellm_p99_us": us(lite.get("other_p99")),
        "litellm_bare_p50_us": us(lite.get("bare_p50")),
        "litellm_overhead_p50_us": us(lite.get("overhead_p50")),
        "litellm_overhead_ratio": None if ratio is None else round(ratio, 1),
        "litellm_overhead_ratio_vs_instant": None if ratio_vs_instant is None else round(ratio_vs_instant, 1),
        "litellm_version": package_version("litellm") if ratio is not None else None,
        "openai_version": package_version("openai"),
        "python": platform.python_version(),
        "machine": f"{cpus()} cores, {platform.machine()}, {platform.system()}",
        "cpu_count": cpus(),
        "iterations": iterations,
        "loopback_iterations": loopback_iterations,
        "rounds": rounds,
        "notes": notes,
    }


def render_table(result: dict[str, Any]) -> str:
    rows = [
        ("instant: router overhead p50 (us)", "overhead_p50_us"),
        ("instant: router overhead p99 (us)", "overhead_p99_us"),
        ("instant: routed calls/s", "instant_calls_per_s"),
        ("instant: routed calls/s on uvloop", "instant_calls_per_s_uvloop"),
        ("instant: bare provider p50 (us)", "instant_bare_p50_us"),
        ("instant: routed p50 (us)", "instant_router_p50_us"),
        ("loopback: bare SDK p50 (us)", "loopback_bare_p50_us"),
        ("loopback: router p50 (us)", "loopback_router_p50_us"),
        ("loopback: router overhead p50 (us)", "loopback_overhead_p50_us"),
        ("litellm: p50 (us)", "litellm_p50_us"),
        ("litellm: overhead p50 (us)", "litellm_overhead_p50_us"),
        ("litellm overhead / ours (loopback)", "litellm_overhead_ratio"),
        ("litellm overhead / ours (instant)", "litellm_overhead_ratio_vs_instant"),
    ]
    lines = [f"{'figure':<38} {'value':>18}  target"]
    for label, key in rows:
        target = f"{TARGETS[key][0]} {TARGETS[key][1]:g}" if key in TARGETS else ""
        lines.append(f"{label:<38} {_fmt(result[key]):>18}  {target}")
    lines.append("")
    lines.append(
        f"python {result['python']}, {result['machine']}, openai {result['openai_version']}, "
        f"litellm {result['litellm_version'] or '-'}"
    )
    lines.append(
        f"{result['iterations']} instant and {result['loopback_iterations']} loopback calls "
        f"per batch, median of {result['rounds']} rounds"
    )
    lines.extend(f"note: {note}" for note in result["notes"])
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"instant calls per batch (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--loopback-iterations",
        type=int,
        default=None,
        help=f"loopback calls per batch (default: iterations/{LOOPBACK_SHARE}, at least 20)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"interleaved rounds; the median round is reported (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip the litellm comparison")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile `iterations` routed instant calls (cProfile, by own time)",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.rounds < 1:
        parser.error("--iterations and --rounds must be at least 1")
    if args.profile:
        print(asyncio.run(profile_instant(args.iterations)))
        return 0
    loopback_iterations = args.loopback_iterations or max(20, args.iterations // LOOPBACK_SHARE)

    report(
        args.json,
        lambda: run(args.iterations, loopback_iterations, args.rounds, use_litellm=not args.no_litellm),
        render_table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
