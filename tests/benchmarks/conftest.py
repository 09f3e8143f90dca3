"""The benchmark scripts import their shared module as scripts do: from their own folder.

`run_benchmark` runs one script's `main` with `--json` (and the tiny sizes a test gives) and
returns the script's module with the one JSON object it printed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))

RunBenchmark = Callable[..., tuple[ModuleType, dict[str, Any]]]


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/`name`.py, loaded as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", _BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture
def run_benchmark(capsys: pytest.CaptureFixture[str]) -> RunBenchmark:
    def run(name: str, *args: str) -> tuple[ModuleType, dict[str, Any]]:
        benchmark = load_benchmark(name)
        capsys.readouterr()  # whatever came before is not the benchmark's
        assert benchmark.main(["--json", *args]) == 0
        return benchmark, json.loads(capsys.readouterr().out)  # exactly one JSON object, nothing else

    return run
