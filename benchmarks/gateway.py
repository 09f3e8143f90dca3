"""What the gateway costs: a call through `router serve` against the same call made to the upstream
directly, and LiteLLM's proxy on the same upstream in the same run.

    python benchmarks/gateway.py                   # a table
    python benchmarks/gateway.py --json            # exactly one JSON object on stdout
    python benchmarks/gateway.py --requests 400 --rounds 1 --no-litellm   # a quick look

Every party is a process of its own: the fake upstream (`FakeUpstream`, the OpenAI wire), the
gateway (`router serve`, one worker), LiteLLM's proxy (one worker) and the load client (aiohttp,
started anew for each measurement, so no party shares a GIL with another). The client sends the
same small chat completion with `concurrency` requests in flight: to the upstream (the baseline),
through the gateway, through LiteLLM's proxy; the added latency is a party's percentile minus the
upstream's at the same concurrency, its throughput the requests per second one worker served.
Rounds rotate the order and each figure is the median over the rounds.

LiteLLM's proxy (`litellm[proxy]`) is installed into a virtualenv of its own under the user's cache
(`~/.cache/router-bench/litellm-proxy`), never into the project's; when it cannot be installed the
note says why and only the gateway is reported. Nothing here asserts a speed; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The scripts run as files (python benchmarks/NAME.py): their folder is on sys.path.
from _shared import cpus, package_version, percentile_us, upstream_process

MODEL = "bench-model"
BODY = {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}
CONCURRENCIES = (1, 32)
DEFAULT_REQUESTS = 4000
DEFAULT_ROUNDS = 3
KEY = "bench-key-0123456789abcdef"
LITELLM_HOME = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "router-bench" / "litellm-proxy"
)
_UPSTREAM_MAIN = "from router.testing import FakeUpstream, run_forever; run_forever(FakeUpstream(seed=0))"

# The goals: reported beside the figures, never asserted.
TARGETS = {
    "gateway_added_c1_p50_us": ("<=", 500.0),
    "throughput_ratio_vs_litellm": (">=", 5.0),
}

_POLICY = """
providers:
  up: {{type: openai_compatible, base_url: "{base_url}", api_key: upstream-key-0123456789}}
targets:
  model: {{provider: up, model: {model}}}
routes:
  chat: {{targets: [model]}}
gateway:
  keys:
    bench: {{key: {key}}}
"""

_LITELLM_CONFIG = """
model_list:
  - model_name: chat
    litellm_params: {{model: openai/{model}, api_base: "{base_url}", api_key: upstream-key-0123456789}}
litellm_settings: {{telemetry: false, drop_params: true, num_retries: 0}}
general_settings: {{master_key: sk-{key}}}
"""


# -- the load client (a process of its own) ---------------------------------------------------------


async def load(url: str, key: str, model: str, concurrency: int, requests: int) -> dict[str, Any]:
    """`requests` calls with `concurrency` in flight (after a tenth as many to warm up): p50, p99, rate."""
    import aiohttp

    body = json.dumps({**BODY, "model": model}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(count: int, samples: list[int]) -> int:
            errors = 0
            for _ in range(count):
                start = time.perf_counter_ns()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    errors += response.status != 200
                samples.append(time.perf_counter_ns() - start)
            return errors

        async def run(total: int) -> tuple[list[int], int, float]:
            samples: list[int] = []
            started = time.perf_counter()
            per = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
            errors = await asyncio.gather(*(worker(n, samples) for n in per))
            return samples, sum(errors), time.perf_counter() - started

        await run(max(requests // 10, concurrency))
        samples, errors, elapsed = await run(requests)
    return {
        "p50_us": percentile_us(samples, 0.5),
        "p99_us": percentile_us(samples, 0.99),
        "rps": len(samples) / elapsed,
        "errors": errors,
    }


def measure(url: str, key: str, model: str, concurrency: int, requests: int) -> dict[str, Any]:
    """`load` in a fresh process."""
    command = [sys.executable, __file__, "--load", url, "--key", key, "--model", model]
    command += ["--concurrency", str(concurrency), "--requests", str(requests)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    result: dict[str, Any] = json.loads(out)
    return result


# -- the parties ------------------------------------------------------------------------------------


@contextlib.contextmanager
def process(command: list[str], ready_url: str, *, env: dict[str, str] | None = None) -> Iterator[None]:
    """A server process, once `ready_url` answers 200; stopped with SIGTERM (SIGKILL after 10 s)."""
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 180
            while not _answers(ready_url):
                if child.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"{command[0]} did not start: {tail}")
                time.sleep(0.2)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def litellm_proxy() -> tuple[Path | None, str]:
    """The `litellm` command of the benchmark's own virtualenv (made on first use), or None and why."""
    command = LITELLM_HOME / "bin" / "litellm"
    if command.exists():
        return command, ""
    try:
        if not (LITELLM_HOME / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_HOME)], check=True, capture_output=True)
        pip = [str(LITELLM_HOME / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"]
        print(f"installing litellm[proxy] into {LITELLM_HOME} (once)...", file=sys.stderr)
        subprocess.run(pip, check=True, capture_output=True, text=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return (
            None,
            f"litellm[proxy] could not be installed into {LITELLM_HOME}: {str(detail).strip()[-300:]}",
        )
    return (command, "") if command.exists() else (None, "litellm[proxy] installed no litellm command")


def litellm_version() -> str | None:
    python = LITELLM_HOME / "bin" / "python"
    if not python.exists():
        return None
    code = "from importlib.metadata import version; print(version('litellm'))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or None


# -- the run ----------------------------------------------------------------------------------------


def run(requests: int, rounds: int, with_litellm: bool) -> dict[str, Any]:
    notes: list[str] = []
    litellm_command: Path | None = None
    if with_litellm:
        litellm_command, why = litellm_proxy()
        if why:
            notes.append(why)
    work = Path(tempfile.mkdtemp(prefix="router-bench-gateway-"))
    samples: dict[str, list[dict[str, Any]]] = {}
    try:
        with upstream_process(_UPSTREAM_MAIN) as base_url, contextlib.ExitStack() as stack:
            parties = {"direct": (f"{base_url}/chat/completions", "none", MODEL)}
            parties["gateway"] = stack.enter_context(gateway(base_url, work))
            if litellm_command is not None:
                parties["litellm"] = stack.enter_context(litellm(litellm_command, base_url, work))
            order = list(parties)
            for round_number in range(rounds):
                turn = order[round_number % len(order) :] + order[: round_number % len(order)]
                for concurrency in CONCURRENCIES:
                    for name in turn:
                        url, key, model = parties[name]
                        figures = measure(url, key, model, concurrency, requests)
                        samples.setdefault(f"{name}_c{concurrency}", []).append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures_of(samples, requests, rounds, notes)


@contextlib.contextmanager
def gateway(base_url: str, work: Path) -> Iterator[tuple[str, str, str]]:
    policy = work / "policy.yaml"
    policy.write_text(_POLICY.format(base_url=base_url, model=MODEL, key=KEY))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "router.cli",
        "serve",
        str(policy),
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with process(command, f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}/v1/chat/completions", KEY, "chat"


@contextlib.contextmanager
def litellm(command: Path, base_url: str, work: Path) -> Iterator[tuple[str, str, str]]:
    config = work / "litellm.yaml"
    config.write_text(_LITELLM_CONFIG.format(base_url=base_url, model=MODEL, key=KEY))
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no cost-map download
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    args = [
        str(command),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    with process(args, f"http://127.0.0.1:{port}/health/liveliness", env=env):
        yield f"http://127.0.0.1:{port}/v1/chat/completions", f"sk-{KEY}", "chat"


def figures_of(
    samples: dict[str, list[dict[str, Any]]], requests: int, rounds: int, notes: list[str]
) -> dict[str, Any]:
    def median(name: str, figure: str) -> float | None:
        runs = samples.get(name)
        return statistics.median(run[figure] for run in runs) if runs else None

    result: dict[str, Any] = {}
    for concurrency in CONCURRENCIES:
        for party in ("direct", "gateway", "litellm"):
            name = f"{party}_c{concurrency}"
            for figure in ("p50_us", "p99_us", "rps"):
                result[f"{name}_{figure}"] = median(name, figure)
            if name in samples:
                errors = sum(run["errors"] for run in samples[name])
                if errors:
                    notes.append(f"{name}: {errors} answers were not 200")
        for party in ("gateway", "litellm"):
            for q in ("p50", "p99"):
                mine, base = result[f"{party}_c{concurrency}_{q}_us"], result[f"direct_c{concurrency}_{q}_us"]
                result[f"{party}_added_c{concurrency}_{q}_us"] = None if mine is None else mine - base
    gateway_rps, litellm_rps = result["gateway_c32_rps"], result["litellm_c32_rps"]
    result["gateway_rps_per_worker"] = gateway_rps
    result["litellm_rps_per_worker"] = litellm_rps
    result["throughput_ratio_vs_litellm"] = gateway_rps / litellm_rps if litellm_rps else None
    result |= {
        "requests": requests,
        "rounds": rounds,
        "cpu_count": cpus(),
        "python": platform.python_version(),
        "aiohttp": package_version("aiohttp"),
        "litellm": litellm_version() if result["litellm_c1_p50_us"] is not None else None,
        "notes": notes,
    }
    return result


def render_table(result: dict[str, Any]) -> str:
    lines = [f"{'figure':<34} {'value':>12}  goal"]
    for name, value in result.items():
        if name == "notes" or isinstance(value, str) or (value is None and name not in TARGETS):
            continue
        goal = TARGETS.get(name)
        shown = "n/a" if value is None else f"{value:,.1f}" if isinstance(value, float) else str(value)
        lines.append(f"{name:<34} {shown:>12}  {f'{goal[0]} {goal[1]:g}' if goal else ''}")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the load client's own mode
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.key, args.model, args.concurrency, args.requests))))
        return 0
    result = run(args.requests, args.rounds, not args.no_litellm)
    print(json.dumps(result, indent=2) if args.json else render_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
