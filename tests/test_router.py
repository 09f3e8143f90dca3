"""The public surface: exports, construction, sync use, lifecycle."""

from __future__ import annotations

import types

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
            "AllTargetsFailed", "Attempt", "BreakerState", "BreakerTransition", "BudgetExceeded", "Call",
            "Chunk", "Clock", "Completion", "ErrorKind", "Health", "MemoryStore", "Outcome", "Policy",
            "PolicyError", "PolicyIssue", "Provider", "ProviderError", "Reply", "Router", "RouterError",
            "StateStore", "StoreUnavailable", "StreamBroken", "SystemClock", "TargetStatus", "ToolCall",
            "StreamRestart", "Usage", "load_policy", "parse_policy", "policy_json_schema",
            "Candidate", "ProviderSpec", "ProviderType", "StateSpec", "StoreType", "Strategy",
            "register_provider", "register_store", "register_strategy",
            "Event", "AttemptEvent", "RetryEvent", "FailoverEvent", "HealthEvent", "ReloadEvent",
            "Control", "InvalidRequest", "ModelEntry",
        ]
    )  # fmt: skip


def test_all_is_every_public_name_the_package_defines():
    """Nothing public is left out of `__all__`, and nothing in it is missing from the package.

    The names are imported on first use (`router.__getattr__`): each is resolved here, which fails for
    a name in `__all__` that its home does not define, before the package's namespace is compared.
    """
    resolved = {name: getattr(router, name) for name in router.__all__}
    assert all(value is not None for value in resolved.values())
    assert set(dir(router)) >= set(router.__all__)
    assert set(router._HOME_OF) == set(router.__all__)  # nothing importable that `__all__` leaves out
    public = {
        name
        for name, value in vars(router).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(router.__all__)


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


ALIASED = (
    POLICY
    + """aliases:
  fast: chat
  tiny: small
"""
)


async def test_aliases_name_routes_and_targets():
    provider = ScriptedProvider("local")
    async with Router(router.parse_policy(ALIASED), providers={"local": provider}) as r:
        via_route = await r.complete("fast", [{"role": "user", "content": "hi"}])
        via_target = await r.complete("tiny", [{"role": "user", "content": "hi"}])
    assert (via_route.target, via_target.target) == ("small", "small")


def test_an_alias_to_nothing_is_located_with_a_suggestion():
    with pytest.raises(PolicyError) as caught:
        router.parse_policy(POLICY + "aliases:\n  fast: chta\n", "p.yaml")
    [issue] = caught.value.issues
    assert str(issue).startswith("p.yaml:9:9: 'chta' is neither a route nor a target; did you mean 'chat'?")


async def test_direct_provider_model_addressing_needs_no_route():
    provider = ScriptedProvider("local")
    async with Router(router.parse_policy(POLICY), providers={"local": provider}) as r:
        result = await r.complete("local:some-other-model", [{"role": "user", "content": "hi"}])
        again = await r.complete("local:some-other-model", [{"role": "user", "content": "hi"}])
        with pytest.raises(router.RouterError, match="unknown route 'nowhere:model'"):
            await r.complete("nowhere:model", [{"role": "user", "content": "hi"}])
    assert (result.target, result.provider, result.model) == (
        "local:some-other-model",
        "local",
        "some-other-model",
    )
    assert [call.model for call in provider.calls] == ["some-other-model", "some-other-model"]
    assert again.attempts[0].outcome == "ok"
