"""The whole thing, briefly: one chaos run through the command line, and the demo."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from router.cli import main
from router.demo import run_demo

# Three seconds at 30 requests/s; the primary is down from 1 s to 2 s.
SCENARIO = """\
# A one-second outage of the primary.
name: blip
duration: 3s
load: {route: chat, rate: 30}
faults:
  - {target: primary, fault: "503", start: 1s, end: 2s}
policy:
  providers:
    openai: {type: openai, breaker: {fail_max: 3, reset_timeout: 250ms, max_reset_timeout: 500ms}}
    anthropic: {type: anthropic}
  targets:
    primary: {provider: openai, model: gpt-4o, price: {input: 2.5, output: 10}}
    secondary: {provider: anthropic, model: claude-3-5-haiku, price: {input: 0.8, output: 4}}
  routes:
    chat:
      targets: [primary, secondary]
      latency_budget: {total: 5s, per_attempt: 1s}
      retry: {attempts: 2, backoff_base: 20ms, backoff_max: 100ms}
"""


def test_a_short_chaos_run_loses_nothing_and_times_the_outage(tmp_path: Path) -> None:
    scenario = tmp_path / "blip.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    # A process of its own: the command forbids non-loopback connections for the rest of its life.
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "chaos", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "requests lost: 0" in done.stdout
    report = json.loads((out / "blip.json").read_text())["reports"]["router"]
    assert report["requests"] == 90 and report["lost"] == 0 and report["success_rate"] == 1.0
    [incident] = report["incidents"]
    assert 0 <= incident["time_to_detect_s"] < 0.5  # three failures open the breaker
    assert 0 <= incident["time_to_fail_back_s"] < 1.0  # the probe comes within max_reset_timeout
    assert incident["primary_calls"] < 10
    assert report["served_by"]["secondary"] > 0 and report["upstream_calls"]["gpt-4o"] > 0
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "blip.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "matplotlib is not installed" in done.stdout


def test_a_bad_scenario_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(SCENARIO.replace("rate: 30", "rate: -1"))
    result = CliRunner().invoke(main, ["chaos", str(scenario)])
    assert result.exit_code == 2
    assert f"{scenario}:4:27: Input should be greater than 0 (load.rate)" in result.output


def test_the_demo_runs_end_to_end_and_loses_nothing() -> None:
    output = io.StringIO()
    lost = run_demo(Console(file=output, width=120), duration=4.0)
    text = output.getvalue()
    assert lost == 0, text
    assert "requests lost: 0" in text and "DOWN" in text  # the plain, non-terminal status lines
    assert "breaker primary: closed -> open" in text
