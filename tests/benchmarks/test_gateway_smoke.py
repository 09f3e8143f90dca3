"""The gateway benchmark runs end to end (gateway only) and reports every figure; its speed is not judged."""

from __future__ import annotations

import math

from .conftest import RunBenchmark


def test_a_tiny_run_reports_every_gateway_figure(run_benchmark: RunBenchmark) -> None:
    _, result = run_benchmark("gateway", "--requests", "40", "--rounds", "1", "--no-litellm")
    for concurrency in (1, 32):
        for party in ("direct", "gateway"):
            for figure in ("p50_us", "p99_us", "rps"):
                value = result[f"{party}_c{concurrency}_{figure}"]
                assert isinstance(value, float) and value > 0 and math.isfinite(value)
        assert math.isfinite(result[f"gateway_added_c{concurrency}_p50_us"])
    assert result["gateway_rps_per_worker"] > 0
    assert result["litellm_c1_p50_us"] is None and result["throughput_ratio_vs_litellm"] is None
    assert not [note for note in result["notes"] if "not 200" in note]
