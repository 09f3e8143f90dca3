"""Calls per second at concurrency, by HTTP transport, bare and through the router; and failover's cost.

    python benchmarks/throughput.py                # a table
    python benchmarks/throughput.py --json         # exactly one JSON object on stdout

Against a `FakeUpstream` in a child process (it would otherwise share the GIL with the client),
`--concurrency` tasks (default 32) call in a loop for `--duration` seconds, after a warm-up
that also opens the connections. Each contender is measured once per round, in an order that
rotates by round:

- sdk_default: the bare openai SDK (`AsyncOpenAI(max_retries=0).chat.completions.create`) on
  its default httpx2 transport;
- sdk_fast: the same calls on `router.providers.transport.AiohttpTransport`;
- router_fast / router_default: `Router.complete` on a one-target route, the provider's
  `transport` set to `aiohttp` (the default) / `httpx`;
- sdk_vendored_aiohttp: the SDK on its own `openai.DefaultAioHttpClient`, for reference;
- aiohttp_raw: aiohttp posting the same JSON and parsing the body, no SDK: the ceiling.

Each contender's calls/s is its median over the rounds; each ratio is the median of its
per-round ratios (the two figures of a round are measured seconds apart, so a machine that
gets busier or quieter between rounds moves both alike). Calls per second of this process's
CPU time are reported too: on a shared machine they show what the client costs, whatever
else runs beside it.

Then failover, one request at a time: the primary answers 500 at once (retry attempts 1) and
the secondary answers. Its cost is the p50 of the routed request minus the p50 of the same two
calls made directly on the same adapter (the failing one, then the answering one), the two
interleaved call by call; the same difference of the CPU time the process spent on each (p50)
is reported beside it, as a busy machine inflates wall time. The same difference over an
in-process provider that answers (and fails) at once is the router's own CPU cost of a failover.

Nothing here asserts a speed; see README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import openai

# The scripts run as files (python benchmarks/NAME.py): their folder is on sys.path.
from _shared import (
    YIELD_EVERY,
    Timed,
    cpus,
    package_version,
    percentile_us,
    rate_parser,
    report,
    rotating_rounds,
    units_per_second,
    upstream_process,
)

from router import Call, ErrorKind, Policy, Provider, ProviderError, Router
from router.policy.model import ProviderSpec
from router.providers.base import Chunk, Reply
from router.providers.openai import OpenAIProvider
from router.providers.transport import sdk_http_client
from router.results import Usage

MODEL = "bench-model"
FAILING = "bench-failing"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
DEFAULT_CONCURRENCY = 32
DEFAULT_DURATION = 1.5
DEFAULT_ROUNDS = 5
DEFAULT_FAILOVER_ITERATIONS = 1000
INSTANT_FAILOVER_ITERATIONS = 20_000
WARMUP = 0.5
# A call that never suspends would never let the loop run: cancelled timers pile up in its heap.

CONTENDERS = (
    "sdk_default",
    "sdk_fast",
    "router_fast",
    "router_default",
    "sdk_vendored_aiohttp",
    "aiohttp_raw",
)
RATIOS = {  # name: (numerator, denominator)
    "router_vs_bare_same_transport": ("router_fast", "sdk_fast"),
    "router_fast_vs_sdk_default": ("router_fast", "sdk_default"),
    "router_default_vs_bare_same_transport": ("router_default", "sdk_default"),
    "router_fast_vs_router_default": ("router_fast", "router_default"),
    "sdk_fast_vs_sdk_default": ("sdk_fast", "sdk_default"),
    "sdk_fast_vs_sdk_vendored_aiohttp": ("sdk_fast", "sdk_vendored_aiohttp"),
}

# The team's goals: reported beside the figures, never asserted.
TARGETS = {
    "router_vs_bare_same_transport": (">=", 0.95),
    "router_fast_vs_sdk_default": (">=", 2.0),
    "failover_overhead_p50_us": ("<=", 50.0),
}

_UPSTREAM_MAIN = (
    "from router.testing import FakeUpstream, Fault, FaultRule, run_forever; "
    f"run_forever(FakeUpstream(seed=0, faults=[FaultRule({FAILING!r}, Fault.server_error())]))"
)


# -- measuring ---------------------------------------------------------------------------------


async def paired(calls: dict[str, Timed], iterations: int, rounds: int) -> dict[str, float]:
    """p50 and p99 (us) of each call, interleaved call by call, and the p50 of the CPU time this
    process spent on it (`_cpu_p50`: what a busy machine's other work does not inflate); the
    median over rounds of each."""
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    for call in calls.values():  # warm-up
        for _ in range(min(iterations, 100)):
            await call()
    figures: list[dict[str, float]] = []
    for _ in range(rounds):
        gc.collect()
        samples: dict[str, list[int]] = {name: [] for name in calls}
        cpu_samples: dict[str, list[int]] = {name: [] for name in calls}
        for index in range(iterations):
            for name, call in calls.items():
                start, start_cpu = clock(), cpu()
                await call()
                cpu_samples[name].append(cpu() - start_cpu)
                samples[name].append(clock() - start)
            if not index % YIELD_EVERY:
                await asyncio.sleep(0)  # untimed
        figures.append({
            **{
                f"{name}_{label}": percentile_us(durations, q)
                for name, durations in samples.items()
                for label, q in (("p50", 0.50), ("p99", 0.99))
            },
            **{f"{name}_cpu_p50": percentile_us(durations, 0.5) for name, durations in cpu_samples.items()},
        })  # fmt: skip
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


# -- the contenders ----------------------------------------------------------------------------


def _policy(base_url: str, transport: str, models: Sequence[str] = (MODEL,), attempts: int = 2) -> Policy:
    names = [f"t{index}" for index in range(len(models))]
    return Policy.model_validate({
        "providers": {"bench": {
            "type": "openai_compatible", "base_url": base_url, "api_key": "x", "transport": transport,
            # the failing primary must stay in play: neither rule may trip
            "breaker": {"fail_max": 1_000_000, "min_calls": 1_000_000},
        }},
        "targets": {n: {"provider": "bench", "model": m} for n, m in zip(names, models, strict=True)},
        "routes": {"chat": {"targets": names, "retry": {"attempts": attempts}}},
    })  # fmt: skip


@contextlib.asynccontextmanager
async def contender(name: str, base_url: str) -> AsyncIterator[Timed]:
    """The call `name` stands for, with whatever it needs opened around it."""
    if name.startswith("router_"):
        router = Router(_policy(base_url, "aiohttp" if name == "router_fast" else "httpx"), seed=0)
        try:
            yield lambda: router.complete("chat", MESSAGES)
        finally:
            await router.aclose()
    elif name == "aiohttp_raw":
        url = f"{base_url}/chat/completions"
        body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:

            async def raw() -> Any:
                async with session.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    return json.loads(await response.read())

            yield raw
    else:
        http_client = {
            "sdk_default": None,
            "sdk_fast": sdk_http_client("aiohttp"),
            "sdk_vendored_aiohttp": openai.DefaultAioHttpClient(),
        }[name]
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, http_client=http_client)
        try:
            yield lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES)
        finally:
            await client.close()


async def throughput(
    base_url: str, names: Sequence[str], concurrency: int, duration: float, rounds: int
) -> list[dict[str, tuple[float, float]]]:
    """Per round, each contender's (calls per second, calls per CPU-second)."""

    async def one(name: str) -> tuple[float, float]:
        async with contender(name, base_url) as call:

            async def counted() -> int:
                await call()
                return 1

            return await units_per_second(counted, concurrency, duration, WARMUP)

    return await rotating_rounds(names, rounds, one)


async def failover(base_url: str, iterations: int, rounds: int) -> dict[str, float]:
    """A routed failover (500 at once, then an answer) against the same two calls made on the adapter."""
    router = Router(_policy(base_url, "aiohttp", (FAILING, MODEL), attempts=1), seed=0)
    adapter = OpenAIProvider("bench", ProviderSpec(type="openai_compatible", base_url=base_url), "x")
    try:
        return await paired(_failover_calls(router, adapter), iterations, rounds)
    finally:
        await router.aclose()
        await adapter.aclose()


async def instant_failover(iterations: int, rounds: int) -> dict[str, float]:
    """The same over a provider that fails or answers at once: the router's own CPU cost of a failover."""
    provider = _InstantProvider()
    router = Router(
        _policy("http://127.0.0.1:9/v1", "aiohttp", (FAILING, MODEL), attempts=1),
        providers={"bench": provider},
    )
    try:
        return await paired(_failover_calls(router, provider), iterations, rounds)
    finally:
        await router.aclose()


def _failover_calls(router: Router, provider: Provider) -> dict[str, Timed]:
    async def routed() -> None:
        result = await router.complete("chat", MESSAGES)
        assert result.model == MODEL and len(result.attempts) == 2, result.attempts

    async def direct() -> None:
        try:
            await provider.complete(Call(FAILING, MESSAGES, 60.0))
        except ProviderError:
            pass
        else:
            raise AssertionError("the primary should have failed")
        await provider.complete(Call(MODEL, MESSAGES, 60.0))

    return {"routed": routed, "direct": direct}


class _InstantProvider:
    """Answers at once, except for the failing model, which answers 500 at once."""

    name = "bench"

    async def complete(self, call: Call) -> Reply:
        if call.model == FAILING:
            raise ProviderError(ErrorKind.SERVER_ERROR, "HTTP 500", provider=self.name, status=500)
        return Reply("Hello there, how are you?", Usage(12, 7), "stop")

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        yield Chunk(finish_reason="stop", usage=Usage(12, 7), text=(await self.complete(call)).text)

    async def list_models(self) -> list[str]:
        return [MODEL, FAILING]

    async def aclose(self) -> None:
        pass


# -- the run -----------------------------------------------------------------------------------


def run(concurrency: int, duration: float, rounds: int, failover_iterations: int) -> dict[str, Any]:
    """Every figure, as the JSON object that `--json` prints."""
    with upstream_process(_UPSTREAM_MAIN) as base_url:
        per_round = asyncio.run(throughput(base_url, CONTENDERS, concurrency, duration, rounds))
        loopback = asyncio.run(failover(base_url, failover_iterations, rounds))
    instant = asyncio.run(
        instant_failover(min(INSTANT_FAILOVER_ITERATIONS, 20 * failover_iterations), rounds)
    )

    def median(name: str, cpu: bool) -> float:
        return statistics.median(figures[name][cpu] for figures in per_round)

    def ratio(numerator: str, denominator: str, cpu: bool) -> float:
        return round(statistics.median(f[numerator][cpu] / f[denominator][cpu] for f in per_round), 3)

    def us(value: float) -> float:
        return round(value, 2)

    return {
        **{f"{name}_calls_per_s": round(median(name, False)) for name in CONTENDERS},
        **{name: ratio(*pair, False) for name, pair in RATIOS.items()},
        **{f"{name}_calls_per_cpu_s": round(median(name, True)) for name in CONTENDERS},
        **{f"{name}_cpu": ratio(*pair, True) for name, pair in RATIOS.items()},
        "failover_overhead_p50_us": us(loopback["routed_p50"] - loopback["direct_p50"]),
        "failover_overhead_cpu_p50_us": us(loopback["routed_cpu_p50"] - loopback["direct_cpu_p50"]),
        "failover_routed_p50_us": us(loopback["routed_p50"]),
        "failover_direct_p50_us": us(loopback["direct_p50"]),
        "failover_routed_p99_us": us(loopback["routed_p99"]),
        "failover_direct_p99_us": us(loopback["direct_p99"]),
        "failover_instant_overhead_p50_us": us(instant["routed_p50"] - instant["direct_p50"]),
        "concurrency": concurrency,
        "duration_s": duration,
        "rounds": rounds,
        "failover_iterations": failover_iterations,
        "openai_version": package_version("openai"),
        "aiohttp_version": package_version("aiohttp"),
        "httpx2_version": package_version("httpx2"),
        "python": platform.python_version(),
        "machine": f"{cpus()} cores, {platform.machine()}, {platform.system()}",
        "cpu_count": cpus(),
    }


def render_table(result: dict[str, Any]) -> str:
    lines = [f"{'figure':<44} {'per second':>12} {'per CPU-s':>12}  target"]
    for name in CONTENDERS:
        key = f"{name}_calls_per_s"
        lines.append(f"{name + ': calls':<44} {result[key]:>12,} {result[name + '_calls_per_cpu_s']:>12,}")
    for name in RATIOS:
        target = f"{TARGETS[name][0]} {TARGETS[name][1]:g}" if name in TARGETS else ""
        lines.append(f"{name:<44} {result[name]:>12.3f} {result[name + '_cpu']:>12.3f}  {target}")
    lines.append("")
    for key in (
        "failover_overhead_p50_us",
        "failover_overhead_cpu_p50_us",
        "failover_routed_p50_us",
        "failover_direct_p50_us",
        "failover_instant_overhead_p50_us",
    ):
        target = f"{TARGETS[key][0]} {TARGETS[key][1]:g}" if key in TARGETS else ""
        lines.append(f"{key:<44} {result[key]:>12,.2f} {'':>12}  {target}")
    lines.append("")
    lines.append(
        f"python {result['python']}, {result['machine']}, openai {result['openai_version']}, "
        f"aiohttp {result['aiohttp_version']}, httpx2 {result['httpx2_version']}"
    )
    lines.append(
        f"concurrency {result['concurrency']}, {result['duration_s']:g} s per measurement, "
        f"{result['rounds']} rounds; failover: {result['failover_iterations']} pairs per round"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = rate_parser(
        __doc__, DEFAULT_CONCURRENCY, "tasks calling at once", DEFAULT_DURATION, DEFAULT_ROUNDS, WARMUP
    )
    parser.add_argument(
        "--failover-iterations",
        type=int,
        default=DEFAULT_FAILOVER_ITERATIONS,
        help=f"loopback failover pairs per round (default {DEFAULT_FAILOVER_ITERATIONS})",
    )
    args = parser.parse_args(argv)
    if min(args.concurrency, args.rounds, args.failover_iterations) < 1 or args.duration <= 0:
        parser.error(
            "--concurrency, --rounds and --failover-iterations must be at least 1; --duration above 0"
        )
    report(
        args.json,
        lambda: run(args.concurrency, args.duration, args.rounds, args.failover_iterations),
        render_table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
