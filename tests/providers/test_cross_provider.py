"""One chain across three wires, each through its real SDK, on one loopback fake upstream."""

from __future__ import annotations

import pytest

from router import Policy, Router
from router.testing import FakeUpstream, Fault

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def chain(upstream: FakeUpstream) -> Router:
    policy = Policy.model_validate(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-test"},
                "anthropic": {
                    "type": "anthropic",
                    "base_url": upstream.anthropic_base_url,
                    "api_key": "ak-test",
                },
                "bedrock": {
                    "type": "bedrock",
                    "region": "us-east-1",
                    "base_url": upstream.bedrock_url,
                    "aws_access_key_id": "AKIDTEST",
                    "aws_secret_access_key": "secret-test",
                },
            },
            "targets": {
                "gpt": {"provider": "openai", "model": "gpt-4o", "price": {"input": 2.5, "output": 10}},
                "claude": {
                    "provider": "anthropic",
                    "model": "claude-haiku-4-5",
                    "price": {"input": 1, "output": 5},
                },
                "bedrock": {
                    "provider": "bedrock",
                    "model": BEDROCK_MODEL,
                    "price": {"input": 0.25, "output": 1.25},
                },
            },
            "routes": {"chat": {"targets": ["gpt", "claude", "bedrock"], "retry": {"attempts": 1}}},
        }
    )
    return Router(policy)


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_down_then_anthropic_down_answers_from_bedrock(fake_upstream, streamed):
    fake_upstream.add_fault("gpt-4o", Fault.unavailable())
    fake_upstream.add_fault("claude-haiku-4-5", Fault.overloaded())
    fake_upstream.set_reply(BEDROCK_MODEL, "Bedrock answers.")
    async with chain(fake_upstream) as router:
        if streamed:
            items = [
                item async for item in router.stream("chat", [{"role": "user", "content": "Hello there"}])
            ]
            result = items[-1]
            assert "".join(items[:-1]) == "Bedrock answers."
        else:
            result = await router.complete("chat", [{"role": "user", "content": "Hello there"}])
    assert (result.text, result.target, result.provider, result.model) == (
        "Bedrock answers.", "bedrock", "bedrock", BEDROCK_MODEL,
    )  # fmt: skip
    assert [(a.target, a.outcome, a.status) for a in result.attempts] == [
        ("gpt", "server_error", 503),
        ("claude", "server_error", 529),
        ("bedrock", "ok", None),
    ]
    usage = result.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert result.cost_usd == pytest.approx(usage.input_tokens * 0.25e-6 + usage.output_tokens * 1.25e-6)
    assert [record.wire for record in fake_upstream.log] == ["openai", "anthropic", "bedrock"]
