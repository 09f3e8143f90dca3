"""Names that must point somewhere: route -> target -> provider."""

from __future__ import annotations

from router.policy import Policy, reference_problems


def test_a_route_target_that_does_not_exist_is_placed_at_the_name(issues, minimal) -> None:
    [issue] = issues(minimal.replace("targets: [mini]", "targets: [mini, mnii]"))
    assert str(issue) == "p.yaml:10:21: unknown target 'mnii'; did you mean 'mini'? (routes.chat.targets[1])"


def test_a_weighted_route_target_is_placed_at_its_target_value(issues, minimal) -> None:
    text = minimal.replace("targets: [mini]", "targets:\n      - mini\n      - {target: minni, weight: 2}")
    [issue] = issues(text)
    assert (
        str(issue)
        == "p.yaml:12:18: unknown target 'minni'; did you mean 'mini'? (routes.chat.targets[1].target)"
    )


def test_a_target_provider_that_does_not_exist_is_placed_at_the_name(issues, minimal) -> None:
    [issue] = issues(minimal.replace("provider: openai", "provider: opena"))
    assert (
        str(issue) == "p.yaml:6:15: unknown provider 'opena'; did you mean 'openai'? (targets.mini.provider)"
    )


def test_without_a_close_name_the_defined_names_are_listed(issues, minimal) -> None:
    [issue] = issues(minimal.replace("provider: openai", "provider: bedrock"))
    assert issue.message == "unknown provider 'bedrock'; defined: openai"


def test_names_with_dots_are_still_located(issues, minimal) -> None:
    text = minimal.replace("  mini:", "  gpt-4.1:").replace("provider: openai", "provider: azure")
    text = text.replace("targets: [mini]", "targets: [gpt-4.1, gpt-4.2]")
    assert [(i.line, i.column, i.path) for i in issues(text)] == [
        (6, 15, "targets.gpt-4.1.provider"),
        (10, 24, "routes.chat.targets[1]"),
    ]


def test_policies_built_in_python_are_checked_too() -> None:
    policy = Policy.model_validate(
        {
            "providers": {"openai": {"type": "openai"}},
            "targets": {"mini": {"provider": "openia", "model": "gpt-4o-mini"}},
            "routes": {"chat": {"targets": ["mini", {"target": "mino"}]}, "empty": {"targets": ["x"]}},
        }
    )
    assert reference_problems(policy) == [
        ("targets.mini.provider", "unknown provider 'openia'; did you mean 'openai'?"),
        ("routes.chat.targets[1].target", "unknown target 'mino'; did you mean 'mini'?"),
        ("routes.empty.targets[0]", "unknown target 'x'; defined: mini"),
    ]


def test_a_consistent_policy_has_no_reference_problems(parse, minimal) -> None:
    assert reference_problems(parse(minimal)) == []
