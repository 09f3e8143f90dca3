"""The streaming benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util

from .conftest import RunBenchmark, is_number


def test_json_run_reports_every_figure(run_benchmark: RunBenchmark) -> None:
    tiny = ["--words", "20", "--concurrency", "2", "--duration", "0.1", "--rounds", "1"]
    benchmark, result = run_benchmark("streaming", *tiny)

    with_litellm = importlib.util.find_spec("litellm") is not None
    for name in benchmark.CONTENDERS:
        keys = [f"{name}_chunks_per_s", f"{name}_chunks_per_cpu_s"]
        if name != benchmark.BASELINE:
            keys += [f"{name}_vs_aiohttp_raw", f"{name}_vs_aiohttp_raw_cpu"]
        for key in keys:
            if name == "litellm" and not with_litellm:
                assert result[key] is None, key
            else:
                assert is_number(result[key]) and result[key] > 0, key
    assert is_number(result["router_stream_vs_sdk_default_cpu"])
    if not with_litellm:
        assert result["router_stream_vs_litellm_cpu"] is None
        assert any("litellm" in note for note in result["notes"])
    assert result["words"] == 20 and result["concurrency"] == 2 and result["rounds"] == 1
