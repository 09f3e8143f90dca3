"""The overhead benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util

from .conftest import RunBenchmark, is_number

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


def test_json_run_reports_every_figure(run_benchmark: RunBenchmark) -> None:
    tiny = ["--iterations", "50", "--loopback-iterations", "5", "--rounds", "1"]
    _, result = run_benchmark("overhead", *tiny)

    for key in POSITIVE:
        assert is_number(result[key]) and result[key] > 0, key
    for key in DIFFERENCES:
        assert is_number(result[key]), key
    assert result["python"] and result["machine"]
    assert result["iterations"] == 50
    if importlib.util.find_spec("litellm") is None:
        assert result["litellm_overhead_ratio"] is None
        assert any("litellm" in note for note in result["notes"])
    else:
        for key in LITELLM:
            assert is_number(result[key]) and result[key] > 0, key
