"""Model errors: located at the offending key or value, phrased for a person editing YAML."""

from __future__ import annotations


def test_an_unknown_key_is_placed_at_the_key_with_a_suggestion(issues, minimal) -> None:
    [issue] = issues(minimal + "    retry:\n      atempts: 3\n")
    assert (
        str(issue)
        == "p.yaml:12:7: unknown key 'atempts'; did you mean 'attempts'? (routes.chat.retry.atempts)"
    )


def test_an_unknown_key_without_a_close_match_lists_the_allowed_keys(issues, minimal) -> None:
    [issue] = issues(minimal + "    retry: {zzz: 3}\n")
    assert (issue.line, issue.column) == (11, 13)
    assert issue.message == (
        "unknown key 'zzz'; expected one of: "
        "attempts, backoff_base, backoff_max, jitter, honor_retry_after, on"
    )


def test_an_unknown_top_level_key_is_suggested_against_the_policy_fields(issues, minimal) -> None:
    [issue] = issues(minimal + "retry_budgets: {}\n")
    assert (
        str(issue) == "p.yaml:11:1: unknown key 'retry_budgets'; did you mean 'retry_budget'? (retry_budgets)"
    )


def test_an_unknown_literal_lists_the_allowed_values(issues, minimal) -> None:
    [issue] = issues(minimal.replace("type: openai", "type: opneai"))
    assert str(issue).startswith(
        "p.yaml:3:11: must be one of 'openai', 'azure_openai', 'anthropic', 'bedrock', "
    )
    assert str(issue).endswith("'lmstudio'; did you mean 'openai'? (providers.openai.type)")


def test_an_unknown_strategy_lists_the_strategies(issues, minimal) -> None:
    [issue] = issues(minimal + "    strategy: round-robin\n")
    assert str(issue) == (
        "p.yaml:11:15: must be one of 'ordered', 'weighted', 'cheapest', 'fastest' (routes.chat.strategy)"
    )


def test_an_unknown_error_kind_in_a_list_is_placed_at_the_item(issues, minimal) -> None:
    [issue] = issues(minimal + "    retry:\n      on: [rate_limited, timeout, server_eror]\n")
    assert (issue.line, issue.column, issue.path) == (12, 35, "routes.chat.retry.on[2]")
    assert issue.message.endswith("; did you mean 'server_error'?")


def test_a_wrong_version_says_which_is_supported(issues, minimal) -> None:
    [issue] = issues("version: 2\n" + minimal)
    assert str(issue) == "p.yaml:1:10: must be 1 (version)"


def test_a_missing_key_is_placed_at_its_parent_mapping(issues, minimal) -> None:
    [issue] = issues(minimal.replace("    model: gpt-4o-mini\n", ""))
    assert str(issue) == "p.yaml:6:5: missing required key 'model' (targets.mini.model)"


def test_a_missing_section_is_placed_at_the_top(issues, minimal) -> None:
    [issue] = issues(minimal.split("routes:")[0])
    assert str(issue) == "p.yaml:1:1: missing required key 'routes' (routes)"


def test_wrong_types_say_what_was_expected(issues, minimal) -> None:
    text = minimal.replace("type: openai", "type: openai\n    limits: {rpm: lots}\n    headers: [a]")
    assert [(i.line, i.column, i.path, i.message) for i in issues(text)] == [
        (4, 19, "providers.openai.limits.rpm", "expected a whole number"),
        (5, 14, "providers.openai.headers", "expected a mapping"),
    ]


def test_constraints_are_reported_in_pydantic_words(issues, minimal) -> None:
    [issue] = issues(minimal + "    retry: {attempts: 0}\n")
    assert (issue.line, issue.column, issue.message) == (11, 23, "Input should be greater than or equal to 1")


def test_a_route_target_of_neither_shape_says_both_shapes(issues, minimal) -> None:
    [issue] = issues(minimal.replace("targets: [mini]", "targets: [mini, 5]"))
    assert str(issue) == "p.yaml:10:21: expected a string or a mapping (routes.chat.targets[1])"


def test_a_route_target_mapping_is_checked_as_a_target_ref(issues, minimal) -> None:
    text = minimal.replace("targets: [mini]", "targets: [mini, {target: mini, wieght: 2}, {weight: 1}]")
    assert [str(issue) for issue in issues(text)] == [
        "p.yaml:10:36: unknown key 'wieght'; did you mean 'weight'? (routes.chat.targets[1].wieght)",
        "p.yaml:10:48: missing required key 'target' (routes.chat.targets[2].target)",
    ]


def test_a_model_rule_is_placed_at_the_model(issues, minimal) -> None:
    [issue] = issues(minimal.replace("type: openai", "type: openai_compatible"))
    assert str(issue) == "p.yaml:3:5: an openai_compatible provider needs base_url (providers.openai)"


def test_every_issue_is_reported_in_line_order(issues) -> None:
    text = """\
        routes:
          chat:
            targets: []
            strategy: fast
        targets:
          mini: {provider: openai, model: m, tier: [premium]}
        providers:
          openai: {type: openai, connect_timeout: 5}
        state: {backend: memcached}
        """
    assert [(i.line, i.path) for i in issues(text)] == [
        (3, "routes.chat.targets"),
        (4, "routes.chat.strategy"),
        (6, "targets.mini.tier"),
        (8, "providers.openai.connect_timeout"),
        (9, "state.backend"),
    ]
