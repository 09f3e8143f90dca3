"""Expected traffic split and cost, and the diff between two policies."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from router.cli import main
from router.policy.compile import compile_plan
from router.traffic import expected_traffic

from .engine.conftest import build_policy


def test_ordered_sends_everything_to_the_first_available_target():
    plan = compile_plan(build_policy())
    [chat] = expected_traffic(plan, input_tokens=1000, output_tokens=1000)
    assert chat.shares == {"a": 1.0}
    assert chat.cost_per_1000 == pytest.approx(1000 * (1000 * 1e-6 + 1000 * 2e-6))
    [down] = expected_traffic(plan, input_tokens=1000, output_tokens=1000, unavailable={"a"})
    assert down.shares == {"b": 1.0} and down.unavailable == ("a",)


def test_weighted_splits_by_weight_and_cheapest_picks_by_request_size():
    weighted = compile_plan(build_policy({"strategy": "weighted", "targets": [
        {"target": "a", "weight": 3}, {"target": "b", "weight": 1}]}))  # fmt: skip
    [split] = expected_traffic(weighted, input_tokens=100, output_tokens=100)
    assert split.shares == {"a": 0.75, "b": 0.25}
    cheapest = compile_plan(build_policy({"strategy": "cheapest"}))
    [pick] = expected_traffic(cheapest, input_tokens=100, output_tokens=100)
    assert pick.shares == {"b": 1.0}


def test_diff_shows_traffic_and_cost_moving(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    text = """\
providers:
  p: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  big: {provider: p, model: big, price: {input: 10, output: 30}}
  small: {provider: p, model: small, price: {input: 1, output: 3}}
routes:
  chat: {targets: [big, small]}
"""
    old.write_text(text)
    new.write_text(text.replace("[big, small]", "[small, big]"))
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["diff", str(old), str(new), "--input-tokens", "1000", "--output-tokens", "1000"]
    )
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "chat" in line)
    assert "40.0000" in line and "4.0000" in line and "-90%" in line
