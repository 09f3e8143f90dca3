"""The environment a policy needs (issue 11): every missing API key and half a set of AWS credentials,
each reported at its provider, all at once, when asked for (`router validate` asks)."""

from __future__ import annotations

import textwrap

import pytest

from router.errors import PolicyError
from router.policy import parse_policy

POLICY = textwrap.dedent(
    """\
    providers:
      openai:
        type: openai
      claude:
        type: anthropic
      groq: {type: groq}
      given:
        type: openai
        api_key: sk-in-the-policy
      local: {type: ollama}
      aws:
        type: bedrock
        region: us-east-1
    targets:
      a: {provider: openai, model: m}
    routes:
      chat: {targets: [a]}
    """
)


def problems(env: dict[str, str], text: str = POLICY) -> list[tuple[int, int, str, str]]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml", env=env, environment=True)
    return [(issue.line, issue.column, issue.path, issue.message) for issue in caught.value.issues]


def no_key(variable: str) -> str:
    return f"no API key: set api_key in the policy or {variable} in the environment"


def test_every_missing_key_is_reported_at_its_provider() -> None:
    assert problems({}) == [
        (2, 3, "providers.openai.api_key", no_key("OPENAI_API_KEY")),
        (4, 3, "providers.claude.api_key", no_key("ANTHROPIC_API_KEY")),
        (6, 3, "providers.groq.api_key", no_key("GROQ_API_KEY")),
    ]


def test_a_key_in_the_environment_or_the_policy_will_do() -> None:
    env = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2", "GROQ_API_KEY": "sk-3"}
    policy = parse_policy(POLICY, "p.yaml", env=env, environment=True)
    assert set(policy.providers) == {"openai", "claude", "groq", "given", "local", "aws"}


def test_an_empty_key_in_the_environment_is_missing() -> None:
    env = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "sk-2", "GROQ_API_KEY": "sk-3"}
    assert [path for _, _, path, _ in problems(env)] == ["providers.openai.api_key"]


def test_an_api_key_written_in_the_policy_is_where_a_missing_value_is_placed() -> None:
    text = POLICY.replace("    type: openai\n  claude", "    type: openai\n    api_key: ''\n  claude")
    env = {"ANTHROPIC_API_KEY": "sk-2", "GROQ_API_KEY": "sk-3"}
    assert problems(env, text)[0][:3] == (4, 5, "providers.openai.api_key")


@pytest.mark.parametrize(
    ("present", "missing"),
    [("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")],
)
def test_half_a_set_of_aws_credentials_in_the_environment_is_reported(present: str, missing: str) -> None:
    env = {
        "OPENAI_API_KEY": "sk-1",
        "ANTHROPIC_API_KEY": "sk-2",
        "GROQ_API_KEY": "sk-3",
        present: "AKIA-SECRET",
    }
    [(line, column, path, message)] = problems(env)
    assert (line, column) == (11, 3) and path.startswith("providers.aws.aws_")
    assert (
        message == f"half a set of AWS credentials: {present} is set in the environment but {missing} is not"
    )


def test_aws_credentials_in_the_policy_need_none_from_the_environment() -> None:
    text = POLICY.replace(
        "region: us-east-1", "region: us-east-1\n    aws_access_key_id: a\n    aws_secret_access_key: b"
    )
    env = {
        "OPENAI_API_KEY": "sk-1",
        "ANTHROPIC_API_KEY": "sk-2",
        "GROQ_API_KEY": "sk-3",
        "AWS_ACCESS_KEY_ID": "x",
    }
    parse_policy(text, "p.yaml", env=env, environment=True)


def test_the_environment_is_not_checked_unless_asked() -> None:
    parse_policy(POLICY, "p.yaml", env={})


def test_the_issues_come_with_every_other_issue_and_never_show_a_value() -> None:
    text = POLICY.replace("region: us-east-1", "region: us-east-1\n    retries: 3")
    env = {"AWS_ACCESS_KEY_ID": "AKIA-SECRET-VALUE"}
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml", env=env, environment=True)
    # A policy that does not validate is not checked against the environment: its providers may be wrong.
    assert [issue.path for issue in caught.value.issues] == ["providers.aws.retries"]
    assert "AKIA-SECRET-VALUE" not in str(caught.value)
