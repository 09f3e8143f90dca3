"""What starting up costs: importing the package, the command line, building a Router, a first call.

    python benchmarks/startup.py               # a table, each figure beside its goal
    python benchmarks/startup.py --json        # exactly one JSON object on stdout
    python benchmarks/startup.py --runs 3      # fewer fresh processes per figure

Every figure is measured in fresh interpreters (the median of `--runs`), as a user meets it:

- `import_router_ms`: `import router`, timed inside the child (the interpreter's own start-up,
  `python_startup_ms`, is measured apart, for reference).
- `help_ms`, `validate_ms`, `explain_ms` (one per shipped policy): the `router` command, as its
  console script runs it, wall time of the whole process.
- `router_build_ms`: `Router(policy)` for a policy of three providers (openai, anthropic,
  bedrock), in a child that has imported `router` and nothing else; `router_import_and_build_ms`
  with the import.
- with `--baseline DIR`, the figures above again for the package in DIR (an older commit's
  `git archive`, say), in the same run, so that before and after meet the same machine load.
- `first_call_ms`: the first call on a route whose provider's SDK is not imported yet (anthropic,
  against a `FakeUpstream` on loopback), then `warm_call_ms`, the next; `first_call_loop_lag_ms`
  is the longest the event loop went unserved meanwhile (a 1 ms ticker), which says whether the
  build held up the other routes.

And the top import-time contributors (`python -X importtime`, own time summed per top-level
package) of `router validate` and of a Router's build. Nothing asserts a speed; see README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
DEFAULT_RUNS = 5
TOP = 12

# The goals of issue 15, in milliseconds (None: reported, no goal).
GOALS: dict[str, float | None] = {
    "import_router_ms": 150,
    "help_ms": 300,
    "validate_ms": 300,
    "explain_ms": 400,
    "router_build_ms": 200,
    "first_call_ms": None,
    "first_call_loop_lag_ms": None,
}

# As the `router` console script does it.
CLI = "import sys; from router.cli import main; sys.argv[0] = 'router'; sys.exit(main())"

THREE_PROVIDERS = {
    "providers": {
        "openai": {"type": "openai", "api_key": "sk-bench"},
        "anthropic": {"type": "anthropic", "api_key": "sk-ant-bench"},
        "bedrock": {
            "type": "bedrock",
            "region": "us-east-1",
            "aws_access_key_id": "AKIABENCH",
            "aws_secret_access_key": "bench",
        },
    },
    # Prices given, as the shipped policies give them: a target without one loads genai-prices' table.
    "targets": {
        "gpt": {"provider": "openai", "model": "gpt-4o", "price": {"input": 2.5, "output": 10}},
        "claude": {"provider": "anthropic", "model": "claude-haiku-4-5", "price": {"input": 1, "output": 5}},
        "nova": {"provider": "bedrock", "model": "amazon.nova-lite-v1:0", "price": {"input": 1, "output": 2}},
    },
    "routes": {"chat": {"targets": ["gpt", "claude", "nova"]}},
}

_BUILD = textwrap.dedent(f"""\
    import json, time
    start = time.perf_counter()
    import router
    imported = time.perf_counter()
    router.Router(router.Policy.model_validate({THREE_PROVIDERS!r}))
    built = time.perf_counter()
    print(json.dumps({{"import": (imported - start) * 1e3, "build": (built - imported) * 1e3}}))
    """)

# The first call on a route served by anthropic, its SDK not imported, with a 1 ms ticker on the loop.
_FIRST_CALL = textwrap.dedent("""\
    import asyncio, json, sys, time
    from router import Policy, Router
    from router.testing import FakeUpstream

    async def main(up):
        policy = Policy.model_validate({
            "providers": {"claude": {"type": "anthropic", "api_key": "k", "base_url": up.anthropic_base_url}},
            "targets": {"haiku": {"provider": "claude", "model": "claude-haiku-4-5"}},
            "routes": {"chat": {"targets": ["haiku"]}},
        })
        lag = 0.0
        async def ticker():
            nonlocal lag
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                lag = max(lag, time.perf_counter() - before - 0.001)
        async with Router(policy) as router:
            assert "anthropic" not in sys.modules
            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            lag = 0.0
            start = time.perf_counter()
            await router.complete("chat", [{"role": "user", "content": "hi"}])
            first = time.perf_counter()
            await router.complete("chat", [{"role": "user", "content": "hi"}])
            warm = time.perf_counter()
            ticking.cancel()
        return {"first": (first - start) * 1e3, "warm": (warm - first) * 1e3, "lag": lag * 1e3}

    with FakeUpstream() as up:
        print(json.dumps(asyncio.run(main(up))))
    """)


def _child(args: list[str], importtime: bool = False, tree: Path | None = None) -> tuple[float, str, str]:
    """Run a fresh interpreter (on the `router` package in `tree`, if given); its wall time in ms, stdout
    and stderr. A failure stops the benchmark."""
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), *args]
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree is not None else None
    start = time.perf_counter()
    # The child's working directory comes first on its path: the tree's, so that its package is imported.
    run = subprocess.run(command, capture_output=True, text=True, cwd=tree or ROOT, timeout=300, env=env)
    elapsed = (time.perf_counter() - start) * 1e3
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)[:80]} failed ({run.returncode}): {run.stderr[-2000:]}")
    return elapsed, run.stdout, run.stderr


def _median_wall(args: list[str], runs: int, tree: Path | None = None) -> float:
    return statistics.median(_child(args, tree=tree)[0] for _ in range(runs))


def _median_reported(code: str, runs: int, tree: Path | None = None) -> dict[str, float]:
    """The median of each figure a child prints as one JSON object."""
    reports = [json.loads(_child(["-c", code], tree=tree)[1].strip().splitlines()[-1]) for _ in range(runs)]
    return {key: statistics.median(report[key] for report in reports) for key in reports[0]}


def top_imports(importtime: str, top: int = TOP) -> list[tuple[str, float]]:
    """`-X importtime` output summed by top-level package (own time), the largest first, in ms."""
    own: Counter[str] = Counter()
    for line in importtime.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            own[found.group(2).split(".")[0]] += int(found.group(1))
    return [(name, us / 1e3) for name, us in own.most_common(top)]


def _package_figures(runs: int, shipped: list[str], tree: Path | None = None) -> dict[str, Any]:
    """The figures that any version of the package has: the import, the commands, a Router's build."""
    result: dict[str, Any] = {}
    result["import_router_ms"] = _median_reported(
        "import json, time\nstart = time.perf_counter()\nimport router\n"
        "print(json.dumps({'ms': (time.perf_counter() - start) * 1e3}))",
        runs,
        tree,
    )["ms"]
    result["help_ms"] = _median_wall(["-c", CLI, "--help"], runs, tree)
    if tree is not None:  # an older package may not read today's policies: those are left out, and named
        result["unreadable"] = [path for path in shipped if not _validates(path, tree)]
        shipped = [path for path in shipped if path not in result["unreadable"]]
    result["validate_ms"] = _median_wall(
        ["-c", CLI, "validate", *(str(ROOT / p) for p in shipped)], runs, tree
    )
    result["explain_ms"] = {
        path: _median_wall(["-c", CLI, "explain", str(ROOT / path)], runs, tree) for path in shipped
    }
    built = _median_reported(_BUILD, runs, tree)
    result["router_build_ms"] = built["build"]
    result["router_import_and_build_ms"] = built["import"] + built["build"]
    return result


def _validates(path: str, tree: Path) -> bool:
    try:
        _child(["-c", CLI, "validate", str(ROOT / path)], tree=tree)
    except RuntimeError:
        return False
    return True


def measure(runs: int, policies: list[Path], baseline: Path | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"runs": runs}
    result["python_startup_ms"] = _median_wall(["-c", "pass"], runs)
    shipped = [str(path.resolve().relative_to(ROOT)) for path in policies]
    result.update(_package_figures(runs, shipped))
    first = _median_reported(_FIRST_CALL, runs)
    result["first_call_ms"], result["warm_call_ms"] = first["first"], first["warm"]
    result["first_call_loop_lag_ms"] = first["lag"]
    result["top_imports_validate_ms"] = top_imports(_child(["-c", CLI, "validate", *shipped], True)[2])
    result["top_imports_router_build_ms"] = top_imports(_child(["-c", _BUILD], True)[2])
    if baseline is not None:
        result["baseline"] = {"tree": str(baseline), **_package_figures(runs, shipped, baseline)}
    result["goals_ms"] = GOALS
    result["goals_met"] = {name: _met(name, result[name]) for name, goal in GOALS.items() if goal is not None}
    result["python"] = platform.python_version()
    result["machine"] = f"{platform.machine()} {platform.system()}"
    return result


def _met(name: str, value: float | dict[str, float]) -> bool:
    goal = GOALS[name]
    assert goal is not None
    values = value.values() if isinstance(value, dict) else [value]
    return all(v <= goal for v in values)


def _row(label: str, value: float, goal: float | None, before: float | None = None) -> str:
    verdict = "" if goal is None else f"goal <= {goal:.0f} ms  {'met' if value <= goal else 'NOT met'}"
    was = f"  (baseline tree {before:.1f} ms)" if before is not None else ""
    return f"{label:<44} {value:9.1f} ms   {verdict}{was}"


def print_table(result: dict[str, Any]) -> None:
    print(f"start-up, median of {result['runs']} fresh processes each (Python {result['python']})")
    base = result.get("baseline") or {}
    print(_row("python -c pass (the interpreter alone)", result["python_startup_ms"], None))
    if base.get("unreadable"):
        print(f"(the baseline tree cannot read {', '.join(base['unreadable'])}: not in its figures)")
    for key, label in (
        ("import_router_ms", "import router"),
        ("help_ms", "router --help"),
        ("validate_ms", f"router validate ({len(result['explain_ms'])} policies)"),
    ):
        print(_row(label, result[key], GOALS[key], base.get(key)))
    for path, ms in result["explain_ms"].items():
        print(_row(f"router explain {path}", ms, GOALS["explain_ms"], base.get("explain_ms", {}).get(path)))
    print(
        _row(
            "Router(three providers), router imported",
            result["router_build_ms"],
            GOALS["router_build_ms"],
            base.get("router_build_ms"),
        )
    )
    print(
        _row(
            "import router + Router(three providers)",
            result["router_import_and_build_ms"],
            None,
            base.get("router_import_and_build_ms"),
        )
    )
    print(_row("first call, its SDK not imported (anthropic)", result["first_call_ms"], None))
    print(_row("  the next call", result["warm_call_ms"], None))
    print(_row("  longest loop stall during the first call", result["first_call_loop_lag_ms"], None))
    for title, key in (
        ("router validate", "top_imports_validate_ms"),
        ("Router(...)", "top_imports_router_build_ms"),
    ):
        tops = ", ".join(f"{name} {ms:.0f}" for name, ms in result[key])
        print(f"top imports of {title} (own ms): {tops}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="Exactly one JSON object on stdout.")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="Fresh processes per figure.")
    parser.add_argument(
        "--policy", action="append", type=Path, help="Validate and explain this (default: the shipped ones)."
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="Also measure the router package in DIR, in this run (e.g. a `git archive` of an older commit).",
    )
    args = parser.parse_args(argv)
    result = measure(max(1, args.runs), args.policy or POLICIES, args.baseline)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
