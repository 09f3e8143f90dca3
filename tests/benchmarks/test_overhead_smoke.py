"""The overhead benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"

# Durations, rates and counts: above zero whatever the machine.
POSITIVE = (
    "instant_calls_per_s",
    "instant_bare_p50_us",
    "instant_router_p50_us",
    "loopback_bare_p50_us",
    "loopback_router_p50_us",
    "cpu_count",
    "iterations",
    "loopback_iterations",
    "rounds",
)
# Differences of two timings: finite, but on a tiny run (or, for loopback, by design) maybe negative.
DIFFERENCES = ("overhead_p50_us", "overhead_p99_us", "loopback_overhead_p50_us")
LITELLM = ("litellm_p50_us", "litellm_overhead_ratio")


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("overhead_benchmark", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_json_run_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _load_benchmark()
    tiny = ["--iterations", "50", "--loopback-iterations", "5", "--rounds", "1"]
    exit_code = benchmark.main(["--json", *tiny])

    assert exit_code == 0

    result = json.loads(capsys.readouterr().out)  # exactly one JSON object, nothing else
    for key in POSITIVE:
        assert _is_number(result[key]) and result[key] > 0, key
    for key in DIFFERENCES:
        assert _is_number(result[key]), key
    assert result["python"] and result["machine"]
    assert result["iterations"] == 50
    if importlib.util.find_spec("litellm") is None:
        assert result["litellm_overhead_ratio"] is None
        assert any("litellm" in note for note in result["notes"])
    else:
        for key in LITELLM:
            assert _is_number(result[key]) and result[key] > 0, key
