"""The streaming benchmark runs end to end and reports every figure; its speed is not judged here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "streaming.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("streaming_benchmark", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_json_run_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _load_benchmark()
    tiny = ["--words", "20", "--concurrency", "2", "--duration", "0.1", "--rounds", "1"]
    assert benchmark.main(["--json", *tiny]) == 0

    result = json.loads(capsys.readouterr().out)  # exactly one JSON object, nothing else
    with_litellm = importlib.util.find_spec("litellm") is not None
    for name in benchmark.CONTENDERS:
        keys = [f"{name}_chunks_per_s", f"{name}_chunks_per_cpu_s"]
        if name != benchmark.BASELINE:
            keys += [f"{name}_vs_aiohttp_raw", f"{name}_vs_aiohttp_raw_cpu"]
        for key in keys:
            if name == "litellm" and not with_litellm:
                assert result[key] is None, key
            else:
                assert _is_number(result[key]) and result[key] > 0, key
    assert _is_number(result["router_stream_vs_sdk_default_cpu"])
    if not with_litellm:
        assert result["router_stream_vs_litellm_cpu"] is None
        assert any("litellm" in note for note in result["notes"])
    assert result["words"] == 20 and result["concurrency"] == 2 and result["rounds"] == 1
