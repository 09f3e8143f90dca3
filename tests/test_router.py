"""The public surface: exports, construction, sync use, lifecycle."""

from __future__ import annotations

import pytest

import router
from router import Policy, PolicyError, Router
from router.testing.scripted import ScriptedProvider

POLICY = """
providers:
  local: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  small: {provider: local, model: small}
routes:
  chat: {targets: [small]}
"""


def test_public_names_are_exactly_the_documented_ones():
    assert sorted(router.__all__) == sorted(
        [
            "AllTargetsFailed",
            "Attempt",
            "BreakerTransition",
            "Call",
            "Chunk",
            "Clock",
            "Completion",
            "ErrorKind",
            "Outcome",
            "Policy",
            "PolicyError",
            "PolicyIssue",
            "Provider",
            "ProviderError",
            "Reply",
            "Router",
            "RouterError",
            "StreamBroken",
            "SystemClock",
            "Usage",
            "load_policy",
            "parse_policy",
            "policy_json_schema",
        ]
    )
    for name in router.__all__:
        assert getattr(router, name) is not None


def test_from_file_and_complete_sync(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    provider = ScriptedProvider("local")
    with Router.from_file(path, providers={"local": provider}) as r:
        result = r.complete_sync("chat", [{"role": "user", "content": "hi"}])
        again = r.complete_sync("chat", [{"role": "user", "content": "hi"}], max_tokens=5)
    assert (result.text, result.target, again.target) == ("ok", "small", "small")
    assert provider.calls[1].max_tokens == 5
    assert provider.closed


async def test_async_context_manager_closes_providers():
    provider = ScriptedProvider("local")
    async with Router(router.parse_policy(POLICY), providers={"local": provider}) as r:
        await r.complete("chat", [{"role": "user", "content": "hi"}], stop=["\n"])
    assert provider.closed
    assert provider.calls[0].options == {"stop": ["\n"]}


def test_a_policy_built_in_python_is_checked_for_references():
    policy = Policy.model_validate(
        {
            "providers": {"local": {"type": "openai_compatible", "base_url": "http://x/v1"}},
            "targets": {"small": {"provider": "locl", "model": "m"}},
            "routes": {"chat": {"targets": ["smal"]}},
        }
    )
    with pytest.raises(PolicyError) as caught:
        Router(policy)
    text = str(caught.value)
    assert "targets.small.provider" in text and "routes.chat.targets[0]" in text


def test_providers_for_unknown_names_are_refused():
    with pytest.raises(router.RouterError, match="nope"):
        Router(router.parse_policy(POLICY), providers={"nope": ScriptedProvider()})


def test_an_openai_provider_without_a_key_is_a_policy_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    policy = router.parse_policy(
        POLICY.replace('type: openai_compatible, base_url: "http://127.0.0.1:9/v1"', "type: openai")
    )
    with pytest.raises(PolicyError, match=r"api_key.*providers\.local"):
        Router(policy)
