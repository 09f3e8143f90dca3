"""The example policies, and one policy that uses every section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from router.errors import ErrorKind
from router.policy import TargetRef, load_policy, parse_policy

EXAMPLES = sorted((Path(__file__).parents[2] / "policies").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"primary-secondary.yaml", "cost-tiers.yaml", "latency-hedging.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_loads_without_environment_variables(path: Path) -> None:
    policy = parse_policy(path.read_text(encoding="utf-8"), str(path), env={})
    assert policy.routes
    for provider in policy.providers.values():
        # Defaults are placeholders, not keys that could be mistaken for real ones.
        if provider.api_key is not None:
            assert provider.api_key.get_secret_value() == "missing"


def test_load_policy_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-environment")
    policy = load_policy(Path(EXAMPLES[0]))
    assert policy.providers["openai"].api_key == SecretStr("from-the-environment")


FULL = """\
version: 1
providers:
  openai:
    type: openai
    api_key: ${OPENAI_API_KEY}
    organization: org-1
    headers: {X-Team: search}
    connect_timeout: 3s
    limits: {rpm: 600, tpm: 100000, max_concurrency: 32}
    breaker: {fail_max: 3, reset_timeout: 10s, max_reset_timeout: 2m, success_threshold: 2}
  local:
    type: openai_compatible
    base_url: http://${LOCAL_HOST:-localhost}:8000/v1
targets:
  big:
    provider: openai
    model: gpt-4o
    tier: premium
    price: {input: 2.5, output: 10}
    context_window: 128000
    capabilities: {streaming: true, tools: true, prefill: false}
  small:
    provider: local
    model: llama
routes:
  chat:
    strategy: weighted
    targets: [big, {target: small, weight: 3}]
    latency_budget: {total: 20s, per_attempt: 8s, first_token: 1500ms, idle: 4s}
    retry:
      attempts: 3
      backoff_base: 100ms
      backoff_max: 2s
      jitter: none
      honor_retry_after: false
      on: [rate_limited, timeout]
    failover: {on: [auth, context_length]}
    hedge_after: 700ms
    max_cost: 0.05
    stream_recovery: raise
retry_budget: {ratio: 0.1, min_retries: 5, window: 30s}
health: {enabled: true, interval: 15s, timeout: 2s, unhealthy_after: 2, healthy_after: 3}
state: {backend: redis, url: "redis://${REDIS_HOST:-127.0.0.1}:6379/0", namespace: prod}
"""


def test_a_policy_using_every_section_loads_as_written() -> None:
    policy = parse_policy(FULL, env={"OPENAI_API_KEY": "k"})
    openai = policy.providers["openai"]
    assert (openai.api_key, openai.organization, openai.headers) == (
        SecretStr("k"),
        "org-1",
        {"X-Team": "search"},
    )
    assert openai.connect_timeout == 3.0
    assert (openai.limits.rpm, openai.limits.tpm, openai.limits.max_concurrency) == (600, 100000, 32)
    assert (openai.breaker.fail_max, openai.breaker.reset_timeout, openai.breaker.max_reset_timeout) == (
        3,
        10.0,
        120.0,
    )
    assert policy.providers["local"].base_url == "http://localhost:8000/v1"
    big = policy.targets["big"]
    assert (big.tier, big.price.input, big.price.output, big.context_window) == ("premium", 2.5, 10.0, 128000)
    assert big.capabilities.tools and not big.capabilities.prefill
    assert policy.targets["small"].tier == "default"
    chat = policy.routes["chat"]
    assert chat.targets == ["big", TargetRef(target="small", weight=3)]
    assert (chat.latency_budget.total, chat.latency_budget.first_token) == (20.0, 1.5)
    assert (chat.retry.attempts, chat.retry.backoff_base, chat.retry.jitter) == (3, 0.1, "none")
    assert chat.retry.on == (ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT)
    assert chat.failover.on == (ErrorKind.AUTH, ErrorKind.CONTEXT_LENGTH)
    assert (chat.hedge_after, chat.max_cost, chat.stream_recovery) == (pytest.approx(0.7), 0.05, "raise")
    assert policy.retry_budget.window == 30.0
    assert policy.health.enabled and policy.health.interval == 15.0
    assert policy.state.url == SecretStr("redis://127.0.0.1:6379/0")


def test_a_loaded_policy_is_an_immutable_value() -> None:
    env = {"OPENAI_API_KEY": "k"}
    policy = parse_policy(FULL, env=env)
    assert policy == parse_policy(FULL, env=env)
    with pytest.raises(ValueError, match="frozen"):
        policy.routes["chat"].retry.attempts = 5  # type: ignore[misc]
