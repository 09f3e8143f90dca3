"""The throughput benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

from .conftest import RunBenchmark, is_number


def test_json_run_reports_every_figure(run_benchmark: RunBenchmark) -> None:
    tiny = ["--concurrency", "2", "--duration", "0.1", "--rounds", "1", "--failover-iterations", "5"]
    benchmark, result = run_benchmark("throughput", *tiny)

    for name in benchmark.CONTENDERS:
        for key in (f"{name}_calls_per_s", f"{name}_calls_per_cpu_s"):
            assert is_number(result[key]) and result[key] > 0, key
    for name in benchmark.RATIOS:
        for key in (name, f"{name}_cpu"):
            assert is_number(result[key]) and result[key] > 0, key
    for key in ("failover_routed_p50_us", "failover_direct_p50_us"):
        assert is_number(result[key]) and result[key] > 0, key
    for key in (
        "failover_overhead_p50_us",
        "failover_overhead_cpu_p50_us",
        "failover_instant_overhead_p50_us",
    ):  # differences
        assert is_number(result[key]), key
    assert result["concurrency"] == 2 and result["rounds"] == 1
