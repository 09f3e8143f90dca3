"""The policy's `gateway` section: checked as the rest of the policy is, every issue at its line."""

from __future__ import annotations

import pytest

from router import PolicyError, parse_policy

BASE = """
providers:
  up: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  small: {provider: up, model: m}
routes:
  chat: {targets: [small]}
aliases: {fast: chat}
"""


def issues(gateway: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(BASE + gateway, "p.yaml", env={"A_KEY": "a-key-0123456789abcdef"})
    return [str(issue) for issue in caught.value.issues]


def test_a_good_section_loads_with_keys_from_the_environment():
    policy = parse_policy(
        BASE + "gateway: {keys: {web: {key: '${A_KEY}', routes: [chat, fast, 'up:other'], rpm: 60}}}",
        env={"A_KEY": "a-key-0123456789abcdef"},
    )
    assert policy.gateway is not None
    key = policy.gateway.keys["web"]
    assert key.key.get_secret_value() == "a-key-0123456789abcdef" and "0123" not in repr(policy)
    assert key.control == [
        "targets",
        "deadline",
        "attempts",
        "max_cost",
        "stream_recovery",
        "metadata",
        "trail",
    ]


@pytest.mark.parametrize(
    ("gateway", "expected"),
    [
        ("gateway: {keys: {web: {key: short}}}", "p.yaml:9:29: a key is at least 16 characters"),
        ("gateway: {admin_key: short}", "gateway.admin_key"),
        ("gateway: {keys: {web: {key: '${A_KEY}', routes: [chta]}}}", "did you mean 'chat'?"),
        ("gateway: {keys: {web: {key: '${A_KEY}', routes: ['nope:x']}}}", "(gateway.keys.web.routes[0])"),
        ("gateway: {keys: {web: {key: '${A_KEY}', control: [everything]}}}", "gateway.keys.web.control[0]"),
        ("gateway: {keys: {a: {key: '${A_KEY}'}, b: {key: '${A_KEY}'}}}", "hold the same secret"),
        ("gateway: {max_body: 10}", "gateway.max_body"),
        ("gateway: {keepalive: 0s}", "gateway.keepalive"),
        ("gateway: {keys: {web: {key: '${A_KEY}', budget: {usd: 0}}}}", "gateway.keys.web.budget.usd"),
    ],
)
def test_each_mistake_is_an_issue_at_its_place(gateway: str, expected: str):
    found = issues(gateway)
    assert any(expected in issue for issue in found), found
    assert not any("a-key-0123456789abcdef" in issue for issue in found)
