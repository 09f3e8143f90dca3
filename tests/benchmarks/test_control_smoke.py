"""The control benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import math

from .conftest import load_benchmark


def test_control_benchmark_runs_with_tiny_sizes():
    figures = load_benchmark("control").run(iterations=20, rounds=1, rules=4, targets=6, runs=1)
    for name in ("plain_us", "rules_first_us", "rules_none_us", "control_us", "compile_priced_ms"):
        assert math.isfinite(figures[name]) and figures[name] > 0, name
    assert figures["compile_table_ms"] > 0 and figures["rules"] == 4
