"""`${VAR}` references: substitution, defaults, escapes, and secrets kept out of messages."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from router.errors import PolicyError
from router.policy.interpolate import Interpolated, interpolate

SECRET = "sk-live-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${HOST}", {"HOST": "example.com"}, "example.com"),
        ("https://${HOST}:${PORT}/v1", {"HOST": "h", "PORT": "8000"}, "https://h:8000/v1"),
        ("${HOST:-localhost}", {}, "localhost"),
        ("${HOST:-localhost}", {"HOST": ""}, "localhost"),
        ("${HOST:-localhost}", {"HOST": "h"}, "h"),
        ("${URL:-http://localhost:8000/v1}", {}, "http://localhost:8000/v1"),
        ("${EMPTY:-}", {}, ""),
        ("${EMPTY}", {"EMPTY": ""}, ""),
        ("$${HOST}", {"HOST": "h"}, "${HOST}"),
        ("$$${HOST}", {"HOST": "h"}, "$${HOST}"),
        ("cost: $5, {braces}", {}, "cost: $5, {braces}"),
    ],
)
def test_references_are_replaced(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env).text == expected


def test_values_from_the_environment_are_reported_as_secrets_and_defaults_are_not() -> None:
    result = interpolate("Bearer ${TOKEN} ${REGION:-eu}", {"TOKEN": SECRET})
    assert result == Interpolated(f"Bearer {SECRET} eu", secrets=(SECRET,))


@pytest.mark.parametrize("text", ["${1HOST}", "${HOST", "${HOST-x}", "${}", "${HO ST}"])
def test_malformed_references_are_problems(text: str) -> None:
    [problem] = interpolate(text, {"HOST": "h"}).problems
    assert problem.startswith("malformed reference")


def test_a_missing_variable_is_named_at_the_scalar(issues, minimal) -> None:
    text = minimal.replace("type: openai", "type: openai\n    base_url: https://${API_HOST}/v1")
    [issue] = issues(text, env={"OTHER": SECRET})
    assert str(issue) == (
        "p.yaml:4:15: environment variable 'API_HOST' is not set and the reference has no default "
        "(providers.openai.base_url)"
    )


def test_a_missing_variable_is_not_reported_again_by_validation(issues, minimal) -> None:
    [issue] = issues(minimal.replace("type: openai", "type: ${PROVIDER_TYPE}"))
    assert (issue.line, issue.column, issue.path) == (3, 11, "providers.openai.type")
    assert "'PROVIDER_TYPE'" in issue.message


def test_interpolated_values_reach_the_model(parse, minimal) -> None:
    text = minimal.replace(
        "type: openai",
        'type: openai\n    base_url: https://${API_HOST}/v1\n    headers: {X-Template: "$${literal}"}'
        '\n    limits: {rpm: "${RPM:-600}"}',
    )
    provider = parse(text, env={"API_HOST": "proxy.internal"}).providers["openai"]
    assert provider.base_url == "https://proxy.internal/v1"
    assert provider.headers == {"X-Template": "${literal}"}
    assert provider.limits.rpm == 600


def test_an_api_key_is_a_secret_str_whose_repr_hides_it(parse, minimal) -> None:
    text = minimal.replace("type: openai", "type: openai\n    api_key: ${OPENAI_API_KEY}")
    policy = parse(text, env={"OPENAI_API_KEY": SECRET})
    api_key = policy.providers["openai"].api_key
    assert isinstance(api_key, SecretStr)
    assert api_key.get_secret_value() == SECRET
    for shown in (repr(api_key), str(api_key), repr(policy), str(policy), repr(policy.providers)):
        assert SECRET not in shown


# Each puts the secret where it does not belong; each error must be reported without it.
MISPLACED = [
    ("type: openai", "type: ${KEY}"),
    ("type: openai", "type: openai\n    connect_timeout: ${KEY}"),
    ("type: openai", 'type: openai\n    connect_timeout: "in ${KEY} seconds"'),
    ("type: openai", 'type: openai\n    limits: {rpm: "${KEY}"}'),
    ("type: openai", 'type: openai\n    breaker: {fail_max: "${KEY}"}'),
    ("type: openai", 'type: openai\n    headers: {Authorization: ["${KEY}"]}'),
    ("model: gpt-4o-mini", 'model: gpt-4o-mini\n    tier: ["${KEY}"]\n    price: {input: "${KEY}"}'),
    ("targets: [mini]", 'targets: [mini]\n    strategy: ${KEY}\n    stream_recovery: "${KEY}"'),
    ("targets: [mini]", 'targets: [mini]\n    retry: {on: ["${KEY}"], jitter: "${KEY}"}'),
    ("targets: [mini]", 'targets: [mini]\n    max_cost: "${KEY}"\n    hedge_after: "x${KEY}x"'),
    ("provider: openai", "provider: ${KEY}"),  # a reference to nothing
    ("targets: [mini]", 'targets: [mini, "${KEY}", {target: "${KEY}"}]'),
]


@pytest.mark.parametrize(("old", "new"), MISPLACED)
def test_interpolated_values_never_appear_in_messages(parse, minimal, old: str, new: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(minimal.replace(old, new), env={"KEY": SECRET})
    error = caught.value
    assert error.issues
    for issue in error.issues:
        assert SECRET not in issue.message
        assert SECRET not in str(issue)
    assert SECRET not in str(error)
    # Pydantic's ValidationError quotes inputs; it must not ride along in the exception chain.
    assert error.__cause__ is None
    assert error.__context__ is None
