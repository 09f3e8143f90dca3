from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping

import pytest

from router.errors import PolicyError, PolicyIssue
from router.policy import Policy, parse_policy

# Ten lines; tests append to the `chat` route, whose keys sit at column 5.
MINIMAL = """\
providers:
  openai:
    type: openai
targets:
  mini:
    provider: openai
    model: gpt-4o-mini
routes:
  chat:
    targets: [mini]
"""


@pytest.fixture
def minimal() -> str:
    return MINIMAL


@pytest.fixture
def parse() -> Callable[..., Policy]:
    """Parse dedented YAML as `p.yaml`, with an empty environment unless one is given."""

    def parse(text: str, env: Mapping[str, str] | None = None) -> Policy:
        return parse_policy(textwrap.dedent(text), "p.yaml", env=env or {})

    return parse


@pytest.fixture
def issues(parse: Callable[..., Policy]) -> Callable[..., list[PolicyIssue]]:
    """The issues that a policy which must not load is rejected with."""

    def issues(text: str, env: Mapping[str, str] | None = None) -> list[PolicyIssue]:
        with pytest.raises(PolicyError) as caught:
            parse(text, env)
        return list(caught.value.issues)

    return issues
