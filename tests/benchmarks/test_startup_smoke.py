"""The start-up benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = _ROOT / "benchmarks" / "startup.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("startup_benchmark", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_run_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _load_benchmark()
    policy = _ROOT / "policies" / "primary-secondary.yaml"
    assert benchmark.main(["--json", "--runs", "1", "--policy", str(policy)]) == 0

    result = json.loads(capsys.readouterr().out)  # exactly one JSON object, nothing else
    for key in ("python_startup_ms", "import_router_ms", "help_ms", "validate_ms", "router_build_ms",
                "router_import_and_build_ms", "first_call_ms", "warm_call_ms"):  # fmt: skip
        assert result[key] > 0, key
    assert result["first_call_loop_lag_ms"] >= 0
    assert list(result["explain_ms"]) == ["policies/primary-secondary.yaml"]
    assert set(result["goals_met"]) == {name for name, goal in result["goals_ms"].items() if goal is not None}
    for key in ("top_imports_validate_ms", "top_imports_router_build_ms"):
        assert result[key] and all(ms >= 0 for _, ms in result[key]), key
    assert any(name == "router" for name, _ in result["top_imports_router_build_ms"])
