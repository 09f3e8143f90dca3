"""The scenario language: the shipped files load; a wrong one is rejected with file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router.chaos import Window, load_scenario, parse_scenario
from router.demo import demo_scenario
from router.errors import PolicyError
from router.testing import Fault

SCENARIOS = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))
# Scenarios that need minutes of load to show what they show (a breaker's open periods at their
# default lengths): `router simulate` runs them in well under a second.
LONG = {"primary-long-outage", "primary-long-outage-health"}
POLICIES = Path(__file__).parents[2] / "policies"

# Fourteen lines; the policy's route sits at line 13.
MINIMAL = """\
# A one-line explanation.
duration: 3s
load: {route: chat, rate: 30}
faults:
  - {target: primary, fault: outage:1s, start: 1s}
policy:
  providers:
    up: {type: openai}
  targets:
    primary: {provider: up, model: gpt-4o}
    secondary: {provider: up, model: gpt-4o-mini}
  routes:
    chat:
      targets: [primary, secondary]
"""


def issues(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_scenario(textwrap.dedent(text), "s.yaml", **kwargs)  # type: ignore[arg-type]
    return [str(issue) for issue in caught.value.issues]


def test_there_are_at_least_six_scenarios_each_explained_in_one_line() -> None:
    assert len(SCENARIOS) >= 6
    for path in SCENARIOS:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, path


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda path: path.stem)
def test_every_shipped_scenario_loads_and_stays_short(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert 10 <= scenario.duration <= (180 if path.stem in LONG else 30)
    assert scenario.description and scenario.faults
    assert scenario.primary in scenario.route_targets()


def test_a_minimal_scenario_reads_as_written() -> None:
    scenario = parse_scenario(MINIMAL, "dir/minimal.yaml")
    assert (scenario.name, scenario.description) == ("minimal", "A one-line explanation.")
    assert (scenario.duration, scenario.load.rate, scenario.load.stream) == (3.0, 30.0, False)
    assert (scenario.primary, scenario.primary_model, scenario.workers) == ("primary", "gpt-4o", 1)
    [rule] = scenario.faults
    # `outage:1s` from `start: 1s` is a 503 from 1 s to 2 s, on the target's model.
    assert (rule.model, rule.fault, rule.start, rule.end) == ("gpt-4o", Fault.unavailable(), 1.0, 2.0)
    assert scenario.incidents == (Window(1.0, 2.0),)


def test_incidents_are_the_primary_windows_where_every_call_fails() -> None:
    text = MINIMAL.replace(
        "  - {target: primary, fault: outage:1s, start: 1s}\n",
        "  - {target: primary, fault: '503', start: 1s, end: 2s}\n"
        "  - {target: primary, fault: '429', start: 1.5s, end: 2.5s}\n"  # overlaps: merged
        "  - {target: primary, fault: '500', start: 4s, end: 5s, probability: 0.5}\n"  # not every call
        "  - {target: primary, fault: 'latency:2s', start: 6s, end: 7s}\n"  # slow, not failing
        "  - {target: primary, fault: 'cut:2', start: 8s, end: 9s}\n"  # streams only; the load is not
        "  - {target: secondary, fault: '503', start: 10s, end: 11s}\n"  # not the primary
        "  - {model: '*', fault: reset, start: 12s, end: 13s}\n",  # any model: the primary's too
    )
    assert parse_scenario(text).incidents == (Window(1.0, 2.5), Window(12.0, 13.0))


def test_the_demo_is_a_scenario_too() -> None:
    scenario = demo_scenario(20.0)
    assert scenario.incidents == (Window(5.0, 12.0),)
    assert scenario.route_targets() == ("primary", "secondary", "cheap")
    wires = [scenario.policy.providers[t.provider].type for t in scenario.policy.targets.values()]
    assert wires == ["openai", "anthropic", "vllm"]


def test_a_policy_file_replaces_the_inline_one(tmp_path: Path) -> None:
    scenario_path = tmp_path / "s.yaml"
    scenario_path.write_text(MINIMAL.replace("target: primary", "model: gpt-4o-mini"))
    scenario = load_scenario(scenario_path, policy_path=POLICIES / "primary-secondary.yaml")
    assert scenario.route_targets() == ("gpt-4o-mini", "llama-local")
    assert scenario.primary_model == "gpt-4o-mini" and scenario.incidents == (Window(1.0, 2.0),)
    assert scenario.policy_file.endswith("primary-secondary.yaml")


def test_a_policy_file_whose_targets_differ_names_the_fault_entry(tmp_path: Path) -> None:
    policy = (POLICIES / "primary-secondary.yaml").read_text()
    assert issues(MINIMAL, policy=(policy, "p.yaml")) == [
        "s.yaml:5:14: unknown target 'primary'; defined: gpt-4o-mini, llama-local (faults[0].target)"
    ]


def test_an_unknown_key_is_placed_at_the_key_with_a_suggestion() -> None:
    assert issues(MINIMAL.replace("load: {route: chat, rate: 30}", "load: {route: chat, rtae: 30}")) == [
        "s.yaml:3:21: unknown key 'rtae'; did you mean 'rate'? (load.rtae)"
    ]


def test_a_missing_key_is_placed_at_its_parent() -> None:
    # The top level starts on line 2, after the comment.
    assert issues(MINIMAL.replace("duration: 3s\n", "")) == [
        "s.yaml:2:1: missing required key 'duration' (duration)"
    ]


def test_a_bad_duration_and_a_bad_probability_are_placed_at_their_values() -> None:
    text = MINIMAL.replace("duration: 3s", "duration: 3").replace("start: 1s}", "start: 1s, probability: 2}")
    assert issues(text) == [
        "s.yaml:2:11: expected a duration such as 250ms, 30s, 2m or 1h, got 3 (duration)",
        "s.yaml:5:65: Input should be less than or equal to 1 (faults[0].probability)",
    ]


def test_a_bad_fault_is_placed_at_its_text() -> None:
    text = MINIMAL.replace("fault: outage:1s", "fault: 'cut:many'")
    assert issues(text) == ["s.yaml:5:30: expected a whole number (faults[0].fault.after_chunks)"]
    text = MINIMAL.replace("fault: outage:1s", "fault: 'teapot'")
    [issue] = issues(text)
    assert issue.startswith("s.yaml:5:30: unknown kind 'teapot'; expected one of: http, rate_limited,")
    assert issue.endswith("(faults[0].fault.kind)")


def test_a_fault_may_be_a_mapping_tagged_by_its_kind() -> None:
    text = MINIMAL.replace("fault: outage:1s", "fault: {kind: outage, length: 1s}")
    [rule] = parse_scenario(text).faults
    assert (rule.model, rule.fault, rule.start, rule.end) == ("gpt-4o", Fault.unavailable(), 1.0, 2.0)
    text = MINIMAL.replace("fault: outage:1s", "fault: {kind: cutt, after_chunks: 2}")
    assert issues(text) == ["s.yaml:5:37: unknown kind 'cutt'; did you mean 'cut'? (faults[0].fault.kind)"]
    text = MINIMAL.replace("fault: outage:1s", "fault: {kind: outage, lenght: 1s}")
    assert issues(text) == [
        "s.yaml:5:30: missing required key 'length' (faults[0].fault.length)",
        "s.yaml:5:45: unknown key 'lenght'; did you mean 'length'? (faults[0].fault.lenght)",
    ]


def test_durations_are_written_as_in_a_policy_but_a_fault_text_reads_bare_seconds() -> None:
    text = MINIMAL.replace("fault: outage:1s, start: 1s", "fault: 'outage:1', start: 1s")
    assert parse_scenario(text).incidents == (Window(1.0, 2.0),)
    text = MINIMAL.replace("fault: outage:1s, start: 1s", "fault: {kind: outage, length: 1}, start: 1")
    assert issues(text) == [
        "s.yaml:5:53: expected a duration such as 250ms, 30s, 2m or 1h, got 1 (faults[0].fault.length)",
        "s.yaml:5:64: expected a duration such as 250ms, 30s, 2m or 1h, got 1 (faults[0].start)",
    ]


def test_a_fault_names_a_model_or_a_target_not_both() -> None:
    text = MINIMAL.replace("target: primary,", "target: primary, model: gpt-4o,")
    assert issues(text) == ["s.yaml:5:5: give model or target (exactly one) (faults[0])"]


def test_scope_goes_in_keys_not_in_the_fault_text() -> None:
    text = MINIMAL.replace("fault: outage:1s, start: 1s", "fault: '503:p=0.5'")
    assert issues(text) == [
        "s.yaml:5:30: write times, after, start, end and probability as keys of the entry (faults[0].fault)"
    ]


def test_an_issue_inside_the_inline_policy_keeps_the_scenario_line_numbers() -> None:
    text = MINIMAL.replace("targets: [primary, secondary]", "targets: [primary, secnodary]")
    assert issues(text) == [
        "s.yaml:14:26: unknown target 'secnodary'; did you mean 'secondary'? (policy.routes.chat.targets[1])"
    ]
    text = MINIMAL.replace("    up: {type: openai}", "    up: {type: opneai}")
    [issue] = issues(text)
    assert issue.startswith("s.yaml:8:16: must be one of 'openai',") and "(policy.providers.up.type)" in issue


def test_a_flow_mapping_policy_is_located_too() -> None:
    text = (
        "duration: 3s\nload: {rate: 1}\npolicy: {providers: {up: {type: openai}}, "
        "targets: {a: {provider: up, model: m}}, routes: {chat: {targets: [a, b]}}}\n"
    )
    assert issues(text) == ["s.yaml:3:112: unknown target 'b'; defined: a (policy.routes.chat.targets[1])"]


def test_the_route_and_the_primary_must_exist() -> None:
    text = MINIMAL.replace("route: chat", "route: chta").replace("# A one", "primary: secondary\n# A one")
    assert issues(text) == ["s.yaml:4:15: unknown route 'chta'; did you mean 'chat'? (load.route)"]
    text = MINIMAL.replace("duration: 3s", "duration: 3s\nprimary: tertiary")
    assert issues(text) == [
        "s.yaml:3:10: 'tertiary' is not a target of route 'chat': primary, secondary (primary)"
    ]


def test_no_policy_at_all_says_where_to_put_one() -> None:
    assert issues(MINIMAL.split("policy:")[0]) == [
        "s.yaml:2:1: no policy: write one under 'policy:' or give --policy FILE"
    ]


def test_not_yaml_or_not_a_mapping_is_said_in_scenario_words() -> None:
    [issue] = issues("duration: [3s\n")
    assert issue == "s.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' " + (
        "(while parsing a flow sequence)"
    )
    assert issues("# nothing\n") == [
        "s.yaml:1:1: the scenario is empty; expected a mapping with duration, load, faults and policy"
    ]
    [issue] = issues("- a\n")
    assert issue == "s.yaml:1:1: the top level is not a mapping; " + (
        "expected a mapping with duration, load, faults and policy"
    )


def test_the_redis_url_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOS_TEST_REDIS", "redis://127.0.0.1:6379/3")
    text = MINIMAL.replace("duration: 3s", "duration: 3s\nworkers: 2\nredis: ${CHAOS_TEST_REDIS}")
    scenario = parse_scenario(text)
    assert (scenario.workers, scenario.redis) == (2, "redis://127.0.0.1:6379/3")
    monkeypatch.delenv("CHAOS_TEST_REDIS")
    [issue] = issues(text)
    assert issue == "s.yaml:4:8: environment variable 'CHAOS_TEST_REDIS' is not set " + (
        "and the reference has no default (redis)"
    )


def test_a_policy_needs_no_secrets_but_keeps_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAOS_TEST_KEY", raising=False)
    monkeypatch.delenv("CHAOS_TEST_MODEL", raising=False)
    text = MINIMAL.replace("{type: openai}", '{type: openai, api_key: "${CHAOS_TEST_KEY}"}').replace(
        "model: gpt-4o}", "model: '${CHAOS_TEST_MODEL:-gpt-4o}'}"
    )
    scenario = parse_scenario(text)
    key = scenario.policy.providers["up"].api_key
    assert key is not None and key.get_secret_value() == "chaos"  # replaced by the pin anyway
    assert scenario.primary_model == "gpt-4o"


def test_an_empty_policy_file_is_reported_as_such() -> None:
    [issue] = issues(MINIMAL, policy=("", "p.yaml"))
    assert issue.startswith("p.yaml:1:1: the policy is empty")


def test_a_scenario_file_is_read_as_a_policy_file_is(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(MINIMAL.encode().replace(b"A one-line", b"A \xff one-line"))
    with pytest.raises(PolicyError) as caught:
        load_scenario(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.column, issue.message) == (1, 5, "the file is not UTF-8 text (byte 0xff)")
