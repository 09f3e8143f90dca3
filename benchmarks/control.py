"""What routing on metadata and per-request control cost a request, and what price lookups cost a load.

    python benchmarks/control.py               # a table
    python benchmarks/control.py --json        # exactly one JSON object on stdout

Per request, through `Router.complete` over an in-process `ScriptedProvider` that answers at once
(so the figures are the router's own work, timed as this process's CPU time, which the machine's
other work does not land in), interleaved over rounds (the median round is reported), each beside
the baseline measured in the same run: a route without rules, called without metadata or control.

- `rules_first_us`: a route of `--rules` rules, the metadata matching the first.
- `rules_none_us`: the same, matching none (every rule is tried: the worst case).
- `control_us`: the plain route, with `targets=` (a reorder) and `attempts=` for the call.

Per load, in fresh interpreters (the median of `--runs`): `compile_priced_ms`, a policy of
`--targets` targets that all declare a price, and `compile_table_ms`, the same with no prices, so
that each is looked up in genai-prices (its import included). Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from router import Policy, Router
from router.testing.scripted import ScriptedProvider

MESSAGES = [{"role": "user", "content": "Hello there"}]
_PROVIDER = {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}


def _policy(rules: int) -> Policy:
    targets = {name: {"provider": "bench", "model": name} for name in ("a", "b", "c")}
    rule_list = [
        {"when": {"tenant": f"t{i}", "tier": ["gold", "silver"]}, "targets": ["b", "a"]} for i in range(rules)
    ]
    routes = {"plain": {"targets": ["a", "b"]}, "ruled": {"targets": ["a", "b"], "rules": rule_list}}
    return Policy.model_validate({"providers": {"bench": _PROVIDER}, "targets": targets, "routes": routes})


async def _per_call_us(call: Any, n: int) -> float:
    # CPU time of this process, not wall time: the machine's other work does not land in it.
    started = time.process_time_ns()
    for _ in range(n):
        await call()
    return (time.process_time_ns() - started) / n / 1000


async def per_request(iterations: int, rounds: int, rules: int) -> dict[str, float]:
    router = Router(_policy(rules), providers={"bench": ScriptedProvider("bench")}, seed=0)
    first = {"tenant": "t0", "tier": "gold"}
    none = {"tenant": "nobody", "tier": "gold"}
    cases = {
        "plain": lambda: router.complete("plain", MESSAGES),
        "rules_first": lambda: router.complete("ruled", MESSAGES, metadata=first),
        "rules_none": lambda: router.complete("ruled", MESSAGES, metadata=none),
        "control": lambda: router.complete("plain", MESSAGES, targets=["b", "a"], attempts=1),
    }
    for call in cases.values():  # warm up
        await _per_call_us(call, min(iterations, 500))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            samples[name].append(await _per_call_us(call, iterations))
    await router.aclose()
    return {name: statistics.median(values) for name, values in samples.items()}


_COMPILE = """
import sys, time
from router.policy import parse_policy
from router.policy.compile import compile_plan
models = {models!r}
priced = {priced!r}
lines = ["providers:", "  openai: {{type: openai, api_key: k}}", "targets:"]
for i in range({targets}):
    price = ", price: {{input: 1, output: 2}}" if priced else ""
    lines.append(f"  t{{i}}: {{{{provider: openai, model: {{models[i % len(models)]}}{{price}}}}}}")
lines += ["routes:", "  chat: {{targets: [t0]}}"]
policy = parse_policy("\\n".join(lines), env={{}})
started = time.perf_counter()
compile_plan(policy)
print((time.perf_counter() - started) * 1000)
"""
_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "no-such-model"]


def compile_ms(targets: int, runs: int, *, priced: bool) -> float:
    script = _COMPILE.format(models=_MODELS, priced=priced, targets=targets)
    times = [
        float(
            subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(times)


def run(iterations: int, rounds: int, rules: int, targets: int, runs: int) -> dict[str, Any]:
    timings = asyncio.run(per_request(iterations, rounds, rules))
    plain = timings["plain"]
    priced, table = compile_ms(targets, runs, priced=True), compile_ms(targets, runs, priced=False)
    return {
        "plain_us": round(plain, 2),
        "rules_first_us": round(timings["rules_first"], 2),
        "rules_none_us": round(timings["rules_none"], 2),
        "control_us": round(timings["control"], 2),
        "rules_first_ratio": round(timings["rules_first"] / plain, 3),
        "rules_none_ratio": round(timings["rules_none"] / plain, 3),
        "control_ratio": round(timings["control"] / plain, 3),
        "compile_priced_ms": round(priced, 2),
        "compile_table_ms": round(table, 2),
        "rules": rules,
        "targets": targets,
        "iterations": iterations,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--iterations", type=int, default=3000, help="calls per case per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", type=int, default=32, help="rules of the ruled route")
    parser.add_argument("--targets", type=int, default=300, help="targets of the compiled policy")
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters per compile figure")
    args = parser.parse_args()
    figures = run(args.iterations, args.rounds, args.rules, args.targets, args.runs)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"per request (router CPU, instant provider, median of {args.rounds} rounds):")
    rows = [
        ("plain", "plain route"),
        ("rules_first", f"{args.rules} rules, the first matches"),
        ("rules_none", f"{args.rules} rules, none matches"),
        ("control", "targets= and attempts= for the call"),
    ]
    for name, label in rows:
        ratio = "" if name == "plain" else f"  ({figures[name + '_ratio']:.2f}x)"
        print(f"  {label:<36} {figures[name + '_us']:8.1f} us{ratio}")
    print(f"compile {args.targets} targets (fresh interpreter, median of {args.runs}):")
    print(f"  every price declared                {figures['compile_priced_ms']:8.1f} ms")
    print(f"  every price from genai-prices       {figures['compile_table_ms']:8.1f} ms")


if __name__ == "__main__":
    main()
