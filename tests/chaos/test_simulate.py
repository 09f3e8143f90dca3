"""`router simulate`: a scenario in virtual time, and how well it agrees with `router chaos`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from router.chaos import Report, build_report, load_scenario
from router.chaos.sim_provider import SimulatedUpstream
from router.chaos.simulate import simulate_scenario
from router.cli import main
from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk
from router.results import Usage
from router.state.memory import MemoryStore
from router.testing import FakeClock, parse_fault_spec

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
providers:
  openai: {type: openai, breaker: {fail_max: 3, reset_timeout: 1s, max_reset_timeout: 2s}}
  anthropic: {type: anthropic}
targets:
  primary: {provider: openai, model: gpt-4o, price: {input: 2.5, output: 10}}
  secondary: {provider: anthropic, model: claude-3-5-haiku, price: {input: 0.8, output: 4}}
routes:
  chat:
    targets: [primary, secondary]
    latency_budget: {total: 10s, per_attempt: 2s}
    retry: {attempts: 2, backoff_base: 50ms, backoff_max: 500ms}
"""

# Twelve seconds of load with every fault kind that makes the primary fail, and a healthy secondary.
SCENARIO = """\
# The primary goes down three ways; the secondary stays up.
name: rough-day
duration: 12s
load: {route: chat, rate: 40}
faults:
  - {target: primary, fault: "503", start: 2s, end: 4s}
  - {target: primary, fault: hang, start: 5s, end: 6s}
  - {target: primary, fault: reset, start: 7s, end: 8s}
  - {target: primary, fault: "429:retry_after=1", start: 9s, end: 10s}
  - {target: primary, fault: "latency:20ms,10ms"}
policy:
  providers: {}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_twelve_second_scenario_simulates_in_seconds_and_loses_nothing(tmp_path: Path) -> None:
    scenario = load_scenario(
        _write(tmp_path, "rough-day.yaml", SCENARIO), policy_path=_write(tmp_path, "policy.yaml", POLICY)
    )
    started = time.perf_counter()
    recording = asyncio.run(simulate_scenario(scenario))
    wall = time.perf_counter() - started
    report = build_report(recording)

    assert wall < 3.0, f"{scenario.duration:g} s of load took {wall:.2f} s"
    assert report.requests == 480 and report.lost == 0, report.errors
    assert report.served_by["secondary"] > 0 and report.served_by["primary"] > 0
    assert set(report.upstream_faults["gpt-4o"]) == {"http_503", "hang", "reset", "http_429", "latency"}
    assert report.served_by["primary"] == report.upstream_faults["gpt-4o"]["latency"]
    outage = report.incidents[0]
    assert outage.time_to_detect is not None and outage.time_to_detect < 0.5
    # A hung call holds its request for the 2 s per-attempt budget, in virtual time.
    assert report.latency is not None and 2.0 <= report.latency.max < 2.5
    print(f"\nsimulated {scenario.duration:g} s of load in {wall:.2f} s of wall time")


def test_the_same_seed_simulates_the_same_run(tmp_path: Path) -> None:
    scenario = load_scenario(
        _write(tmp_path, "rough-day.yaml", SCENARIO), policy_path=_write(tmp_path, "policy.yaml", POLICY)
    )
    first, second = (build_report(asyncio.run(simulate_scenario(scenario))) for _ in range(2))
    assert first.to_json() == second.to_json()


DEAD_ROUTE = """\
# Everything down, 4 requests always in flight.
duration: 2s
load: {route: chat, concurrency: 4}
faults:
  - {model: "*", fault: "503"}
policy:
  providers: {}
"""


def test_a_closed_loop_whose_requests_call_nobody_still_ends(tmp_path: Path) -> None:
    """A request whose every target is skipped takes no virtual time; the load must still end."""
    policy = POLICY.replace("type: anthropic}", "type: anthropic, breaker: {fail_max: 3, reset_timeout: 5s}}")
    scenario = load_scenario(
        _write(tmp_path, "dead.yaml", DEAD_ROUTE), policy_path=_write(tmp_path, "p.yaml", policy)
    )
    reports: list[Report] = []
    worker = threading.Thread(
        target=lambda: reports.append(build_report(asyncio.run(simulate_scenario(scenario)))), daemon=True
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the simulation spun at one instant"
    [report] = reports
    assert report.requests > 0 and report.errors == {"all_targets_failed": report.requests}


def test_workers_that_share_state_share_their_breakers(tmp_path: Path) -> None:
    policy = _write(tmp_path, "p.yaml", POLICY)
    calls = {}
    for shared in (False, True):
        text = SCENARIO.replace(
            "load:", "workers: 3\n" + ("redis: redis://127.0.0.1:1/0\n" if shared else "") + "load:"
        )
        scenario = load_scenario(_write(tmp_path, "s.yaml", text), policy_path=policy)
        report = build_report(asyncio.run(simulate_scenario(scenario)))
        assert report.requests == 3 * 480 and report.lost == 0
        calls[shared] = report.incidents[0].primary_calls
    # Three breakers each take three failures to open; one shared breaker takes three in all.
    assert calls[True] < calls[False]


@pytest.mark.parametrize("name", ["primary-long-outage", "primary-long-outage-health"])
def test_a_long_outage_with_the_default_breaker_fails_back_within_30_s_and_costs_a_probe_per_open_period(
    name: str,
) -> None:
    """The primary is down for 60 s, one streamed request every 4 s, no breaker or failback tuning.

    Fail-back: open periods run 5, 10, 20, 20 ... s (`reset_timeout` doubling up to
    `max_reset_timeout`, jittered down by up to 20 %), so a healed target waits at most one capped
    period for the request that probes it, plus the gap to that request: 20 + 4 = 24 s <= 30 s.
    With health on, a completion probe every `interval` closes the breaker: within 10 + 4 s.

    Calls to the dead primary: before the first trip, at most `fail_max` failures in a row count
    to it, and each request in flight spends at most `attempts` calls, so `fail_max * attempts`
    covers the failures that trip the breaker. After that the breaker lets one probe through per
    open period, and a failed probe opens it again: every probe inside the outage is followed by
    an open transition inside it, so probes <= open transitions in the window. Health adds at most
    one completion probe per interval.
    """
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    breaker = scenario.policy.providers[scenario.policy.targets["primary"].provider].breaker
    attempts = scenario.policy.routes["chat"].retry.attempts
    health = scenario.policy.health
    assert breaker == type(breaker)(), "the scenario must keep the default breaker"
    assert scenario.load.stream and scenario.load.rate is not None
    gap = 1 / scenario.load.rate

    report = build_report(asyncio.run(simulate_scenario(scenario)))

    assert report.lost == 0, report.errors
    [outage] = report.incidents
    assert (outage.start, outage.end) == (0.0, 60.0)
    assert outage.time_to_fail_back is not None, "the primary never answered again"
    wait = health.interval if health.enabled else breaker.max_reset_timeout
    assert outage.time_to_fail_back <= wait + gap <= 30.0, outage
    opens = sum(
        1
        for event in report.transitions
        if event.target == "primary" and event.new == "open" and outage.start <= event.at < outage.end
    )
    health_probes = int(-(-(outage.end - outage.start) // health.interval)) if health.enabled else 0
    assert opens >= 1
    assert outage.primary_calls <= opens + breaker.fail_max * attempts + health_probes, (
        outage.primary_calls,
        opens,
    )


def test_one_worker_on_shared_state_keeps_a_two_percent_error_rate_on_the_primary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workers: 1` with `redis:` runs on the shared store's rule; 2 % of failed calls trip nothing.

    Before the breaker rewrite, one worker on Redis state moved 63 % of 400 such requests to the
    backup: the store counted failures over its window with no volume, so a few made a trip.
    """
    stores: list[MemoryStore] = []

    class SpiedStore(MemoryStore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr("router.chaos.simulate.MemoryStore", SpiedStore)
    scenario = load_scenario(_write(tmp_path, "noisy.yaml", NOISY_SHARED))
    assert (scenario.workers, scenario.redis) == (1, "redis://127.0.0.1:1/0")

    report = build_report(asyncio.run(simulate_scenario(scenario)))

    assert len(stores) == 1, "one worker with redis: must run on the (simulated) shared store"
    assert report.requests == 400 and report.lost == 0, report.errors
    failed = report.upstream_faults["gpt-4o"].get("http_500", 0)
    assert 0 < failed < 0.05 * report.upstream_calls["gpt-4o"]
    assert report.served_by["primary"] >= 0.98 * report.requests, report.served_by
    assert not [event for event in report.transitions if event.new == "open"], report.transitions


# Ten seconds at 40 requests/s, 2 % of the primary's calls fail; the default breaker, one worker on Redis.
NOISY_SHARED = """# 2 % of the primary's calls fail; one worker shares its state through Redis.
duration: 10s
workers: 1
redis: redis://127.0.0.1:1/0
load: {route: chat, rate: 40}
faults:
  - {target: primary, fault: "500", probability: 0.02}
policy:
  providers:
    openai: {type: openai}
    anthropic: {type: anthropic}
  targets:
    primary: {provider: openai, model: gpt-4o, price: {input: 2.5, output: 10}}
    backup: {provider: anthropic, model: claude-3-5-haiku, price: {input: 0.8, output: 4}}
  routes:
    chat:
      targets: [primary, backup]
"""


# -- agreement with a real run ------------------------------------------------------------------


def _shortened(source: Path, tmp_path: Path, replacements: dict[str, str]) -> tuple[Path, Path]:
    """A copy of a shipped scenario with `replacements` made, and its inline policy as a file."""
    text = source.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    scenario = _write(tmp_path, source.name, text)
    policy = _write(tmp_path, "policy.yaml", yaml.safe_dump(yaml.safe_load(text)["policy"]))
    return scenario, policy


def _run(*arguments: str) -> subprocess.Popen[str]:
    # Processes of their own: both commands forbid non-loopback connections for the rest of their life.
    return subprocess.Popen(
        [sys.executable, "-m", "router.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )


def _report(process: subprocess.Popen[str], path: Path) -> dict[str, Any]:
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output
    report: dict[str, Any] = json.loads(path.read_text())["reports"]["router"]
    return report


AGREEMENT = {
    # The primary answers 503 for 2 s of 6: detection, failover and failback.
    "primary-outage": {
        "duration: 15s": "duration: 6s",
        "rate: 40": "rate: 30",
        "start: 4s, end: 9s": "start: 1.5s, end: 3.5s",
    },
    # Streams cut, stalled and malformed at random, then 1.5 s of every stream cut.
    "stream-faults": {"duration: 14s": "duration: 6s", "start: 6s, end: 9s": "start: 2s, end: 3.5s"},
}


def test_a_simulation_agrees_with_a_real_run(tmp_path: Path) -> None:
    """Success rate within 0.05 and cost within 5 %, for two shipped scenarios cut to 6 s each."""
    runs = {}
    for name, replacements in AGREEMENT.items():  # the real runs side by side: each mostly waits
        directory = tmp_path / name
        directory.mkdir()
        scenario, policy = _shortened(ROOT / "scenarios" / f"{name}.yaml", directory, replacements)
        out = directory / "out"
        runs[name] = (
            _run("chaos", str(scenario), "--policy", str(policy), "--out", str(out)),
            scenario,
            policy,
        )
    lines = []
    for name, (chaos, scenario, policy) in runs.items():
        out = scenario.parent / "out"
        real = _report(chaos, out / f"{name}.json")
        simulate = _run("simulate", str(policy), str(scenario), "--out", str(out))
        simulated = _report(simulate, out / f"{name}.simulated.json")
        for label, report in (("real", real), ("simulated", simulated)):
            lines.append(
                f"{name} {label}: success {report['success_rate']:.2%}, cost ${report['cost_usd']:.6f}, "
                f"p50 {report['latency_ms']['p50']:.1f} ms, {report['requests']} requests"
            )
        assert simulated["requests"] == real["requests"], lines
        assert abs(simulated["success_rate"] - real["success_rate"]) <= 0.05, lines
        assert abs(simulated["cost_usd"] - real["cost_usd"]) <= 0.05 * real["cost_usd"], lines
    print("\n" + "\n".join(lines))


def test_a_one_worker_simulation_on_redis_agrees_with_a_real_run_on_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """`workers: 1` with `redis:`: the real run's breakers live in Redis, the simulation's in its
    shared store; both keep a 2 % error rate on the primary. Success, cost and the primary's share agree."""
    text = NOISY_SHARED.replace("duration: 10s", "duration: 6s").replace("redis://127.0.0.1:1/0", redis_url)
    scenario = _write(tmp_path, "noisy-shared.yaml", text)
    policy = _write(tmp_path, "policy.yaml", yaml.safe_dump(yaml.safe_load(text)["policy"]))
    out = tmp_path / "out"
    real = _report(
        _run("chaos", str(scenario), "--policy", str(policy), "--out", str(out)), out / "noisy-shared.json"
    )
    simulated = _report(
        _run("simulate", str(policy), str(scenario), "--out", str(out)), out / "noisy-shared.simulated.json"
    )
    lines = [
        f"{label}: success {report['success_rate']:.2%}, cost ${report['cost_usd']:.6f}, "
        f"served by {report['served_by']}, {report['requests']} requests"
        for label, report in (("real", real), ("simulated", simulated))
    ]
    assert simulated["requests"] == real["requests"] == 240, lines
    assert abs(simulated["success_rate"] - real["success_rate"]) <= 0.05, lines
    assert abs(simulated["cost_usd"] - real["cost_usd"]) <= 0.05 * real["cost_usd"], lines
    for report in (real, simulated):
        assert report["served_by"].get("primary", 0) >= 0.98 * report["requests"], lines
    print("\n" + "\n".join(lines))


# -- bad input: the same errors as `router chaos` -------------------------------------------------

BAD_SCENARIO = """\
name: broken
duration: 5s
load: {route: chat, rate: 10, rat: 3}
faults:
  - {target: primray, fault: "503"}
  - {target: primary, fault: "cut:x"}
"""
BAD_POLICY = POLICY.replace("type: anthropic", "type: anthropik").replace("retry:", "retyr:")


@pytest.mark.parametrize(
    ("scenario_text", "policy_text"),
    [(BAD_SCENARIO, POLICY), (SCENARIO, BAD_POLICY), (BAD_SCENARIO, BAD_POLICY)],
    ids=["bad-scenario", "bad-policy", "both"],
)
def test_a_bad_scenario_or_policy_is_refused_as_chaos_refuses_it(
    tmp_path: Path, scenario_text: str, policy_text: str
) -> None:
    scenario = _write(tmp_path, "scenario.yaml", scenario_text)
    policy = _write(tmp_path, "policy.yaml", policy_text)
    chaos = CliRunner().invoke(main, ["chaos", str(scenario), "--policy", str(policy)])
    simulate = CliRunner().invoke(main, ["simulate", str(policy), str(scenario)])
    assert chaos.exit_code == simulate.exit_code == 2
    assert simulate.stderr == chaos.stderr
    lines = simulate.stderr.splitlines()
    assert lines and all(line.startswith((f"{scenario}:", f"{policy}:")) for line in lines), lines


def test_a_missing_file_is_refused_as_chaos_refuses_it(tmp_path: Path) -> None:
    policy = _write(tmp_path, "policy.yaml", POLICY)
    missing = tmp_path / "nowhere.yaml"
    chaos = CliRunner().invoke(main, ["chaos", str(missing), "--policy", str(policy)])
    simulate = CliRunner().invoke(main, ["simulate", str(policy), str(missing)])
    assert chaos.exit_code == simulate.exit_code == 2
    assert simulate.stderr == chaos.stderr == f"{missing}: cannot read: No such file or directory\n"


# -- the simulated upstream, fault by fault -------------------------------------------------------

CALL = Call("m", [{"role": "user", "content": "Say hello."}], timeout=5.0)
REPLY = "m says hello: this answer came through whole, word by word."
USAGE = Usage(len("Say hello.") // 4 + 1, len(REPLY) // 4 + 1)


SPECS: dict[str, dict[str, str]] = {
    "azure_openai": {"base_url": "http://127.0.0.1:9", "api_version": "2024-10-21"},
    "bedrock": {"region": "us-east-1"},
}


def _provider(kind: str, *faults: str) -> tuple[Any, SimulatedUpstream, FakeClock]:
    clock = FakeClock()
    upstream = SimulatedUpstream([parse_fault_spec(f"m={fault}") for fault in faults], seed=0, clock=clock)
    spec = ProviderSpec.model_validate({"type": kind, **SPECS.get(kind, {})})
    return upstream.provider("p", spec), upstream, clock


async def _read(stream: Any) -> list[Chunk]:
    return [chunk async for chunk in stream]


@pytest.mark.parametrize(
    ("kind", "fault", "error", "status", "retry_after"),
    [
        ("openai", "503", ErrorKind.SERVER_ERROR, 503, None),
        ("openai", "429:retry_after=2", ErrorKind.RATE_LIMITED, 429, 2.0),
        ("anthropic", "529", ErrorKind.SERVER_ERROR, 529, None),
        ("anthropic", "402", ErrorKind.AUTH, 402, None),
        ("bedrock", "bedrock_error:ServiceQuotaExceededException", ErrorKind.RATE_LIMITED, 400, None),
        ("azure_openai", "context_length", ErrorKind.CONTEXT_LENGTH, 400, None),
        ("openai", "content_filter", ErrorKind.CONTENT_FILTER, 400, None),
        ("openai", "reset", ErrorKind.CONNECTION, None, None),
    ],
)
async def test_a_rejection_is_the_error_the_adapter_raises(
    kind: str, fault: str, error: ErrorKind, status: int | None, retry_after: float | None
) -> None:
    provider, upstream, _ = _provider(kind, fault)
    with pytest.raises(ProviderError) as raised:
        await provider.complete(CALL)
    assert (raised.value.kind, raised.value.status, raised.value.retry_after) == (error, status, retry_after)
    assert [(call.model, call.status) for call in upstream.calls] == [("m", status)]


async def test_answers_carry_the_fake_upstreams_usage_and_take_virtual_time() -> None:
    provider, upstream, clock = _provider("openai", "delay:3s")
    started = clock.monotonic()
    reply = await provider.complete(CALL)
    assert (reply.text, reply.usage, reply.finish_reason) == (REPLY, USAGE, "stop")
    assert clock.monotonic() - started == pytest.approx(3.002)
    chunks = await _read(provider.stream(CALL))
    assert "".join(c.text for c in chunks) == REPLY
    assert [c.usage for c in chunks if c.usage] == [USAGE]
    assert [call.fault for call in upstream.calls] == ["delay", "delay"]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "bedrock"])
async def test_a_cut_stream_breaks_after_the_words_sent(kind: str) -> None:
    provider, _, _ = _provider(kind, "cut:5")
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError) as raised:
        async for chunk in provider.stream(CALL):
            chunks.append(chunk)
    assert raised.value.kind is ErrorKind.CONNECTION
    lead = {"openai": 1, "anthropic": 3, "bedrock": 1}[kind]  # events before the first word
    assert len([c for c in chunks if c.text]) == 5 - lead


async def test_a_prefill_is_continued_with_the_rest_of_the_reply_it_begins() -> None:
    # As on the fake upstream: the model carries on another model's answer from its first words.
    clock = FakeClock()
    upstream = SimulatedUpstream([], seed=0, clock=clock, models=["m", "n"])
    provider = upstream.provider("p", ProviderSpec.model_validate({"type": "anthropic"}))
    call = Call("n", [*CALL.messages, {"role": "assistant", "content": "m says"}], timeout=5.0)
    chunks = await _read(provider.stream(call))
    assert "m says" + "".join(c.text for c in chunks) == REPLY
    reply = await provider.complete(call)
    assert "m says" + reply.text == REPLY


async def test_a_stream_without_its_terminator_loses_only_what_the_terminator_carries() -> None:
    for kind, usage in (("openai", USAGE), ("anthropic", USAGE), ("bedrock", None)):
        provider, _, _ = _provider(kind, "no_done")
        chunks = await _read(provider.stream(CALL))
        finish = [c for c in chunks if c.finish_reason]
        assert [c.finish_reason for c in finish] == ["stop"], kind
        assert next((c.usage for c in chunks if c.usage), None) == usage, kind


async def test_stalls_wait_and_malformed_events_warn() -> None:
    provider, _, clock = _provider("anthropic", "stall:4,2s,times=1", "malformed:4")
    started = clock.monotonic()
    chunks = await _read(provider.stream(CALL))
    assert "".join(c.text for c in chunks) == REPLY and clock.monotonic() - started == pytest.approx(2.002)
    chunks = await _read(provider.stream(CALL))
    assert "".join(c.text for c in chunks) == REPLY and sum(1 for c in chunks if c.warning) == 1
