"""Routing on metadata: a route's `rules`, validated, compiled into the plan, applied per request,
and shown by `router explain --metadata`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from router import AllTargetsFailed, ErrorKind, Router
from router.cli import main
from router.policy import parse_policy
from router.policy.compile import compile_plan
from router.testing.scripted import ScriptedProvider, Step

POLICY = """\
providers:
  p: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", api_key: k}
targets:
  small: {provider: p, model: small-model, price: {input: 0.1, output: 0.2}}
  big: {provider: p, model: big-model, price: {input: 2, output: 8}}
  eu: {provider: p, model: eu-model, price: {input: 1, output: 2}}
routes:
  chat:
    targets: [small, big]
    rules:
      - when: {region: eu}
        targets: [eu]
      - when: {tier: [premium, enterprise], beta: true}
        targets: [big, small]
      - when: {tier: premium}
        targets: [big]
      - when: {priority: 1}
        targets: [{target: big, weight: 1}, {target: small, weight: 3}]
        strategy: weighted
"""
USER = [{"role": "user", "content": "hi"}]


def _plan():
    return compile_plan(parse_policy(POLICY, "p.yaml", env={}))


def _targets(route, metadata) -> list[str] | None:
    rule = route.rule_for(metadata)
    return None if rule is None else [t.name for t in rule.targets]


def test_the_first_rule_that_matches_wins():
    route = _plan().routes["chat"]
    assert _targets(route, {"region": "eu", "tier": "premium"}) == ["eu"]
    assert _targets(route, {"tier": "enterprise", "beta": True}) == ["big", "small"]
    assert _targets(route, {"tier": "premium", "beta": "true"}) == ["big", "small"]  # a header's text
    assert _targets(route, {"tier": "premium", "beta": False}) == ["big"]
    assert _targets(route, {"tier": "premium"}) == ["big"]
    assert _targets(route, {"priority": 1}) == ["big", "small"]
    assert _targets(route, {"priority": "1"}) == ["big", "small"]


def test_no_match_keeps_the_routes_own_targets():
    route = _plan().routes["chat"]
    assert _targets(route, {}) is None
    assert _targets(route, {"tier": "free"}) is None
    assert _targets(route, {"tier": {"premium": 1}}) is None  # a mapping is no value of a rule's
    assert _targets(route, {"region": None}) is None


def test_a_list_in_metadata_matches_when_any_item_does():
    # As LiteLLM's request `tags`: the first rule that any of them satisfies.
    route = _plan().routes["chat"]
    assert _targets(route, {"tier": ["free", "premium"]}) == ["big"]
    assert _targets(route, {"tier": ["free"], "region": ("us", "eu")}) == ["eu"]
    assert _targets(route, {"tier": []}) is None


def test_rules_are_compiled_into_sets_with_their_strategy():
    rules = _plan().routes["chat"].rules
    assert rules[1].when == (("tier", frozenset({"premium", "enterprise"})), ("beta", frozenset({"true"})))
    assert rules[3].strategy is not None and rules[3].strategy.name == "weighted"
    assert rules[3].weights == (1.0, 3.0)
    assert rules[0].strategy is None


def test_a_rules_unknown_target_is_located(issues):
    found = issues(
        """\
        providers:
          p: {type: openai}
        targets:
          a: {provider: p, model: m}
        routes:
          chat:
            targets: [a]
            rules:
              - when: {tier: premium}
                targets: [a, b]
        """
    )
    assert [(i.line, i.path, i.message) for i in found] == [
        (10, "routes.chat.rules[0].targets[1]", "unknown target 'b'; defined: a")
    ]


def test_a_rule_needs_a_condition_and_targets(issues):
    found = issues(
        """\
        providers:
          p: {type: openai}
        targets:
          a: {provider: p, model: m}
        routes:
          chat:
            targets: [a]
            rules:
              - when: {}
                targets: []
              - targets: [a]
        """
    )
    assert [i.path for i in found] == [
        "routes.chat.rules[0].when",
        "routes.chat.rules[0].targets",
        "routes.chat.rules[1].when",
    ]


def _router() -> tuple[Router, ScriptedProvider]:
    provider = ScriptedProvider("p")
    return Router(parse_policy(POLICY, "p.yaml", env={}), providers={"p": provider}, seed=1), provider


async def test_metadata_routes_a_request_through_the_router():
    router, provider = _router()
    async with router:
        assert (await router.complete("chat", USER, metadata={"region": "eu"})).target == "eu"
        assert (await router.complete("chat", USER, metadata={"tier": "premium"})).target == "big"
        assert (await router.complete("chat", USER, metadata={"tier": "free"})).target == "small"
        assert (await router.complete("chat", USER)).target == "small"
        streamed = [item async for item in router.stream("chat", USER, metadata={"region": "eu"})]
        assert streamed[-1].target == "eu"
    assert [call.model for call in provider.calls] == [
        "eu-model",
        "big-model",
        "small-model",
        "small-model",
        "eu-model",
    ]


async def test_a_rules_targets_fail_over_among_themselves_only():
    router, provider = _router()
    provider.script("eu-model", Step.fail(ErrorKind.AUTH, status=401))
    provider.script("big-model", Step.fail(ErrorKind.AUTH, status=401))
    async with router:
        with pytest.raises(AllTargetsFailed) as caught:
            await router.complete("chat", USER, metadata={"region": "eu"})
        assert [a.target for a in caught.value.attempts] == ["eu"]
        fell_back = await router.complete("chat", USER, metadata={"tier": "premium", "beta": True})
        assert [(a.target, a.outcome) for a in fell_back.attempts] == [("big", "auth"), ("small", "ok")]


async def test_control_targets_may_name_a_rules_target_and_beat_the_rules():
    router, _ = _router()
    async with router:
        result = await router.complete("chat", USER, metadata={"tier": "premium"}, targets=["eu", "small"])
    assert result.target == "eu"


def _explain(tmp_path: Path, *args: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(POLICY))
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["explain", str(path), "--route", "chat", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_explain_lists_the_rules(tmp_path):
    out = _explain(tmp_path)
    assert "1. when region=eu -> eu" in out
    assert "2. when tier in {enterprise, premium} and beta=true -> big, small" in out
    assert "4. when priority=1 -> big, small (weighted)" in out
    assert "applies" not in out


def test_explain_metadata_shows_the_rule_and_its_candidates(tmp_path):
    out = _explain(tmp_path, "--metadata", "tier=premium")
    assert "metadata tier=premium: rule 3 applies" in out
    assert "big-model" in out and "small-model" not in out.split("fails over on")[0]
    free = _explain(tmp_path, "--metadata", "tier=free", "--metadata", "region=us")
    assert "metadata tier=free, region=us: no rule matches: the route's own targets" in free
    table = free.split("fails over on")[0]
    assert table.index("small-model") < table.index("big-model") and "eu-model" not in table


def test_explain_metadata_must_be_key_value(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    result = CliRunner().invoke(main, ["explain", str(path), "--metadata", "premium"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output


def test_a_tier_budget_covers_a_rules_targets_too():
    policy = parse_policy(
        POLICY.replace("model: eu-model,", "model: eu-model, tier: premium,")  # eu: a rule's alone
        + "budgets:\n  premium-daily: {tier: premium, usd: 5, per: day}\n",
        "p.yaml",
        env={},
    )
    route = compile_plan(policy).routes["chat"]
    [budget] = route.budgets
    assert budget.name == "premium-daily" and budget.covers(route.rules[0].targets[0])


def test_rules_on_one_shared_key_are_a_table_by_its_value_in_order():
    policy = parse_policy(
        POLICY.split("    rules:")[0]
        + """\
    rules:
      - when: {tenant: [acme, globex], tier: premium}
        targets: [big]
      - when: {tenant: acme}
        targets: [eu]
      - when: {tenant: initech, beta: true}
        targets: [small]
""",
        "p.yaml",
        env={},
    )
    route = compile_plan(policy).routes["chat"]
    assert route.rule_index is not None
    key, by_value = route.rule_index
    assert key == "tenant" and {v: [r.index for r in rules] for v, rules in by_value.items()} == {
        "acme": [0, 1],
        "globex": [0],
        "initech": [2],
    }
    assert _targets(route, {"tenant": "acme", "tier": "premium"}) == ["big"]  # first match still wins
    assert _targets(route, {"tenant": "acme"}) == ["eu"]
    assert _targets(route, {"tenant": "globex"}) is None
    assert _targets(route, {"tenant": "initech", "beta": "true"}) == ["small"]
    assert _targets(route, {"tier": "premium"}) is None
    # Tags: the rules any of them holds, still first match first.
    assert _targets(route, {"tenant": ["initech", "acme"], "beta": True}) == ["eu"]
    assert _targets(route, {"tenant": ["initech", "nobody"], "beta": True}) == ["small"]
    # No key in every rule: the rules are tried in order.
    assert _plan().routes["chat"].rule_index is None


def test_explain_metadata_is_not_for_the_traffic_split(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    result = CliRunner().invoke(main, ["explain", str(path), "--traffic", "--metadata", "tier=premium"])
    assert result.exit_code == 2 and "--traffic is every request's split" in result.output
