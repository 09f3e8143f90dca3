"""Prices a target does not declare come from genai-prices, looked up at load time; `explain` says where
each price came from."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import genai_prices
import pytest
from click.testing import CliRunner

from router import Router
from router.cli import main
from router.policy import parse_policy
from router.policy.compile import compile_plan
from router.prices import table_price
from router.testing.scripted import ScriptedProvider

POLICY = """\
providers:
  openai: {type: openai, api_key: sk-test}
  claude: {type: anthropic, api_key: sk-test}
  local: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  mini: {provider: openai, model: gpt-4o-mini}
  sonnet: {provider: claude, model: claude-sonnet-4-5}
  declared: {provider: openai, model: gpt-4o-mini, price: {input: 9, output: 99}}
  invented: {provider: openai, model: no-such-model-anywhere}
  homegrown: {provider: local, model: llama-3.1-8b}
routes:
  chat: {targets: [mini, sonnet, declared, invented, homegrown]}
"""
USER = [{"role": "user", "content": "Hello there"}]


def _per_million(model: str, provider_id: str, **usage: int) -> float:
    """The table's own price of a million tokens of one kind, through its public API."""
    return float(
        genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider_id).total_price
    )


def test_a_target_without_a_price_takes_the_tables():
    targets = compile_plan(parse_policy(POLICY, "p.yaml", env={})).targets
    mini, sonnet = targets["mini"], targets["sonnet"]
    assert (mini.price_source, sonnet.price_source) == ("genai-prices", "genai-prices")
    assert mini.input_price * 1e6 == pytest.approx(_per_million("gpt-4o-mini", "openai", input_tokens=10**6))
    assert mini.output_price * 1e6 == pytest.approx(
        _per_million("gpt-4o-mini", "openai", output_tokens=10**6)
    )
    # A tiered price is its first tier: the price of a prompt below the long-context threshold.
    short = _per_million("claude-sonnet-4-5", "anthropic", input_tokens=100_000) * 10
    assert sonnet.input_price * 1e6 == pytest.approx(short)


def test_a_declared_price_wins_and_an_unknown_model_is_free_and_says_so():
    targets = compile_plan(parse_policy(POLICY, "p.yaml", env={})).targets
    declared, invented, homegrown = targets["declared"], targets["invented"], targets["homegrown"]
    assert (declared.price_source, declared.input_price * 1e6, declared.output_price * 1e6) == (
        "policy",
        9,
        99,
    )
    assert (invented.price_source, invented.input_price, invented.output_price) == ("unknown", 0.0, 0.0)
    # A type the table does not know (any OpenAI-compatible server) is not looked up at all.
    assert homegrown.price_source == "unknown"
    assert table_price("openai_compatible", "gpt-4o-mini") is None


async def test_the_tables_price_is_what_a_completion_costs():
    policy = parse_policy(POLICY, "p.yaml", env={})
    scripted = {name: ScriptedProvider(name) for name in policy.providers}
    async with Router(policy, providers=scripted) as router:
        result = await router.complete("chat", USER)
        direct = await router.complete("openai:gpt-4o", USER)  # an address: its price is the table's too
    mini = router.plan.targets["mini"]
    expected = result.usage.input_tokens * mini.input_price + result.usage.output_tokens * mini.output_price
    assert result.target == "mini" and result.cost_usd == pytest.approx(expected) and result.cost_usd > 0
    per_input = _per_million("gpt-4o", "openai", input_tokens=10**6) / 1e6
    assert direct.cost_usd >= direct.usage.input_tokens * per_input > 0


def test_explain_says_where_each_price_came_from(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    result = CliRunner(env={"COLUMNS": "220"}).invoke(main, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[2].strip(): line for line in result.output.splitlines() if line.count("│") > 8}
    assert "genai-prices" in rows["mini"] and "genai-prices" in rows["sonnet"]
    assert "policy" in rows["declared"]
    assert "unknown" in rows["invented"] and "unknown" in rows["homegrown"]


def test_the_table_is_imported_only_for_a_target_without_a_price():
    script = textwrap.dedent(
        """
        import sys
        import router
        from router.policy import parse_policy
        from router.policy.compile import compile_plan
        priced = '''
        providers: {openai: {type: openai, api_key: k}, local: {type: openai_compatible, base_url: "http://h/v1"}}
        targets:
          a: {provider: openai, model: gpt-4o, price: {input: 1, output: 1}}
          b: {provider: local, model: anything}
        routes: {chat: {targets: [a, b]}}
        '''
        compile_plan(parse_policy(priced, env={}))
        print("genai_prices" in sys.modules)
        compile_plan(parse_policy(priced.replace(", price: {input: 1, output: 1}", ""), env={}))
        print("genai_prices" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
