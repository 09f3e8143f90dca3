"""YAML itself: syntax errors, empty files, duplicate keys, anchors, and where things are."""

from __future__ import annotations

import pytest

from router.policy.source import Location, read_source


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            "providers:\n  openai: [1, 2\n",
            3,
            1,
            "invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ),
        (
            "providers:\n\topenai: {}\n",
            2,
            1,
            "invalid YAML: found character '\\t' that cannot start any token",
        ),
        ("providers: a: b\n", 1, 13, "invalid YAML: mapping values are not allowed here"),
        (
            "providers: !custom x\n",
            1,
            12,
            "invalid YAML: could not determine a constructor for the tag '!custom'",
        ),
        ("providers: \x07\n", 1, 12, "invalid YAML: special characters are not allowed (character #x0007)"),
        ("routes: {}\n---\nroutes: {}\n", 2, 1, "invalid YAML: but found another document"),
        ("? [a, b]\n: 1\n", 1, 3, "invalid YAML: a mapping key must be a plain value"),
    ],
)
def test_yaml_errors_point_at_the_problem(issues, text: str, line: int, column: int, message: str) -> None:
    [issue] = issues(text)
    assert (issue.line, issue.column) == (line, column)
    assert issue.message.startswith(message)
    assert issue.path == ""


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_policy_says_so(issues, text: str) -> None:
    [issue] = issues(text)
    assert (
        str(issue) == "p.yaml:1:1: the policy is empty; expected a mapping with providers, targets and routes"
    )


@pytest.mark.parametrize(("text", "line"), [("- providers\n", 1), ("# intro\n\njust text\n", 3)])
def test_a_top_level_that_is_not_a_mapping_says_so(issues, text: str, line: int) -> None:
    [issue] = issues(text)
    assert (issue.line, issue.column) == (line, 1)
    assert issue.message.startswith("the top level is not a mapping")


def test_duplicate_keys_are_reported_at_the_second_one(issues, minimal) -> None:
    text = minimal.replace("    model: gpt-4o-mini\n", "    model: gpt-4o-mini\n    model: gpt-4o\n")
    [issue] = issues(text)
    assert str(issue) == "p.yaml:8:5: duplicate key 'model' (first defined on line 7) (targets.mini.model)"


def test_duplicate_keys_are_reported_with_every_other_issue(issues, minimal) -> None:
    text = minimal + "routes:\n  other:\n    targets: [mini]\n    strategy: fast\n"
    found = [(issue.line, issue.message) for issue in issues(text)]
    assert found == [
        (11, "duplicate key 'routes' (first defined on line 8)"),
        (14, "must be one of 'ordered', 'weighted', 'cheapest', 'fastest'; did you mean 'fastest'?"),
    ]


def test_keys_stay_text_even_where_yaml_1_1_reads_booleans(parse, minimal) -> None:
    # `on` is a field name; YAML 1.1 would make it the boolean True.
    policy = parse(minimal + "    retry:\n      on: [timeout]\n    failover: {on: [auth]}\n")
    route = policy.routes["chat"]
    assert route.retry.on == ("timeout",)
    assert route.failover.on == ("auth",)


def test_anchors_aliases_and_merge_keys_are_followed(parse, minimal) -> None:
    text = minimal + (
        "    retry: &retry {attempts: 3, backoff_base: 1s}\n"
        "  batch:\n"
        "    targets: [mini]\n"
        "    retry:\n"
        "      <<: *retry\n"
        "      attempts: 5\n"
        "  copy:\n"
        "    targets: [mini]\n"
        "    retry: *retry\n"
    )
    routes = parse(text).routes
    assert (routes["chat"].retry.attempts, routes["chat"].retry.backoff_base) == (3, 1.0)
    assert (routes["batch"].retry.attempts, routes["batch"].retry.backoff_base) == (5, 1.0)
    assert routes["copy"].retry == routes["chat"].retry


def test_an_alias_inside_its_own_anchor_is_an_issue(issues) -> None:
    found = [issue for issue in issues("providers: &loop [*loop]\n") if "alias" in issue.message]
    # An alias is the anchored node itself, so it is placed where the anchor is.
    assert [(issue.line, issue.column, issue.path) for issue in found] == [(1, 12, "providers[0]")]


def test_every_key_and_value_has_a_one_based_location() -> None:
    source = read_source("routes:\n  chat:\n    targets: [a, {target: b}]\n", "p.yaml")
    assert source.keys[("routes",)] == Location(1, 1)
    assert source.values[("routes",)] == Location(2, 3)
    assert source.keys[("routes", "chat", "targets")] == Location(3, 5)
    assert source.values[("routes", "chat", "targets", 0)] == Location(3, 15)
    assert source.values[("routes", "chat", "targets", 1, "target")] == Location(3, 27)
    assert source.data == {"routes": {"chat": {"targets": ["a", {"target": "b"}]}}}
