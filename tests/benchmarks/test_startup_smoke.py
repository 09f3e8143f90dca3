"""The start-up benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

from pathlib import Path

from .conftest import RunBenchmark

_ROOT = Path(__file__).resolve().parents[2]


def test_json_run_reports_every_figure(run_benchmark: RunBenchmark) -> None:
    policy = _ROOT / "policies" / "primary-secondary.yaml"
    _, result = run_benchmark("startup", "--runs", "1", "--policy", str(policy))

    for key in ("python_startup_ms", "import_router_ms", "help_ms", "validate_ms", "router_build_ms",
                "router_import_and_build_ms", "first_call_ms", "warm_call_ms"):  # fmt: skip
        assert result[key] > 0, key
    assert result["first_call_loop_lag_ms"] >= 0
    assert list(result["explain_ms"]) == ["policies/primary-secondary.yaml"]
    assert set(result["goals_met"]) == {name for name, goal in result["goals_ms"].items() if goal is not None}
    for key in ("top_imports_validate_ms", "top_imports_router_build_ms"):
        assert result[key] and all(ms >= 0 for _, ms in result[key]), key
    assert any(name == "router" for name, _ in result["top_imports_router_build_ms"])
