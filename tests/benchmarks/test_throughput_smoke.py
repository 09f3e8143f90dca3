"""The throughput benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("throughput_benchmark", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_json_run_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _load_benchmark()
    tiny = ["--concurrency", "2", "--duration", "0.1", "--rounds", "1", "--failover-iterations", "5"]
    assert benchmark.main(["--json", *tiny]) == 0

    result = json.loads(capsys.readouterr().out)  # exactly one JSON object, nothing else
    for name in benchmark.CONTENDERS:
        for key in (f"{name}_calls_per_s", f"{name}_calls_per_cpu_s"):
            assert _is_number(result[key]) and result[key] > 0, key
    for name in benchmark.RATIOS:
        for key in (name, f"{name}_cpu"):
            assert _is_number(result[key]) and result[key] > 0, key
    for key in ("failover_routed_p50_us", "failover_direct_p50_us"):
        assert _is_number(result[key]) and result[key] > 0, key
    for key in (
        "failover_overhead_p50_us",
        "failover_overhead_cpu_p50_us",
        "failover_instant_overhead_p50_us",
    ):  # differences
        assert _is_number(result[key]), key
    assert result["concurrency"] == 2 and result["rounds"] == 1
