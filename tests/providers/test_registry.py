"""Provider types: a type of the user's own, registered from outside the package, is routed to like a
built-in one, and a policy that names no registered type is still refused at the line that names it."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

import router
from router import Call, Chunk, Completion, Policy, PolicyError, ProviderType, Reply, Router, Usage
from router.policy import parse_policy, policy_json_schema
from router.policy.model import ProviderSpec
from router.providers import build_provider
from router.providers.openai import OpenAIProvider
from router.providers.pool import KeyPool
from router.providers.registry import PROVIDER_TYPES
from router.testing import FakeClock

USER = [{"role": "user", "content": "Hello"}]


class ToyProvider:
    """A provider of a wire the router has never heard of: it answers with what it was built from."""

    def __init__(self, name: str, spec: ProviderSpec, key: str | None) -> None:
        self.name = name
        self.base_url = spec.base_url
        self.key = key
        self.closed = False

    async def complete(self, call: Call) -> Reply:
        return Reply(f"toy {call.model} at {self.base_url}", Usage(1, 3), "stop")

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        for word in ("toy ", call.model):
            yield Chunk(word)
        yield Chunk(finish_reason="stop", usage=Usage(1, 2))

    async def list_models(self) -> list[str]:
        return ["toy-1"]

    async def aclose(self) -> None:
        self.closed = True


def _toy_needs_toy_url(spec: ProviderSpec) -> str | None:
    if spec.base_url and not spec.base_url.startswith("http://toy"):
        return "a toy provider lives at http://toy..."
    return None


TOY = ProviderType(
    "toy", ToyProvider, key_variable="TOY_API_KEY", needs=("base_url",), check=_toy_needs_toy_url
)

POLICY: dict[str, Any] = {
    "providers": {"mine": {"type": "toy", "base_url": "http://toy.local"}},
    "targets": {"small": {"provider": "mine", "model": "toy-1"}},
    "routes": {"chat": {"targets": ["small"]}},
}


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test registers into a copy: the built-in types are all that other tests see.
    monkeypatch.setattr(PROVIDER_TYPES, "_entries", dict(PROVIDER_TYPES._entries))


def parse(text: str) -> Policy:
    return parse_policy(text, "p.yaml", env={})


def issues(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    return [str(issue) for issue in caught.value.issues]


async def test_a_registered_type_is_routed_to_from_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    router.register_provider(TOY)
    monkeypatch.setenv("TOY_API_KEY", "toy-secret")
    async with Router(Policy.model_validate(POLICY)) as toy_router:
        completion = await toy_router.complete("chat", USER)
        assert (completion.text, completion.provider, completion.target) == (
            "toy toy-1 at http://toy.local",
            "mine",
            "small",
        )
        streamed = [item async for item in toy_router.stream("chat", USER)]
        assert streamed[:-1] == ["toy ", "toy-1"] and isinstance(streamed[-1], Completion)
        client = toy_router._providers["mine"].built  # built by the first call
        assert isinstance(client, ToyProvider) and client.key == "toy-secret"
    assert client.closed


def test_a_registered_type_with_several_keys_is_a_pool() -> None:
    router.register_provider(TOY)
    spec = ProviderSpec.model_validate({"type": "toy", "base_url": "http://toy", "api_keys": ["k1", "k2"]})
    pool = build_provider("mine", spec, clock=FakeClock(), environ={})
    assert isinstance(pool, KeyPool) and len(pool.key_states) == 2


def test_its_key_variable_is_named_when_the_key_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    router.register_provider(TOY)
    monkeypatch.delenv("TOY_API_KEY", raising=False)
    with pytest.raises(PolicyError, match="TOY_API_KEY"):
        Router(Policy.model_validate(POLICY))


def test_a_type_whose_sdk_is_not_installed_is_refused_at_load_naming_the_extra(tmp_path: Any) -> None:
    # Clients are built on first use: the missing SDK must still fail when the policy loads, at its line.
    router.register_provider(ProviderType("toy", ToyProvider, sdk=("router_no_such_sdk.client", "toy")))
    path = tmp_path / "policy.yaml"
    path.write_text(
        "targets: {small: {provider: mine, model: toy-1}}\n"
        "providers:\n  mine:\n    type: toy\n"
        "routes: {chat: {targets: [small]}}\n"
    )
    with pytest.raises(PolicyError) as caught:
        Router.from_file(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.path) == (4, "providers.mine.type")
    assert "router_no_such_sdk.client" in issue.message and "pip install 'router[toy]'" in issue.message


def test_a_type_is_unknown_until_registered_and_then_suggested() -> None:
    text = textwrap.dedent(
        """\
        providers:
          mine: {type: toyy, base_url: "http://toy.local"}
        targets:
          small: {provider: mine, model: toy-1}
        routes:
          chat: {targets: [small]}
        """
    )
    [before] = issues(text)
    assert before.startswith("p.yaml:2:16: must be one of 'openai', ")
    assert "did you mean 'toy'" not in before
    router.register_provider(TOY)
    [after] = issues(text)
    assert after.startswith("p.yaml:2:16: must be one of 'openai', ")
    assert after.endswith("'lmstudio', 'toy'; did you mean 'toy'? (providers.mine.type)")
    assert parse(text.replace("toyy", "toy")).providers["mine"].type == "toy"


def test_the_rules_of_a_registered_type_are_located_at_its_provider() -> None:
    router.register_provider(TOY)
    text = textwrap.dedent(
        """\
        providers:
          mine:
            type: toy
        targets:
          small: {provider: mine, model: toy-1}
        routes:
          chat: {targets: [small]}
        """
    )
    assert issues(text) == ["p.yaml:3:5: a toy provider needs base_url (providers.mine)"]
    assert issues(text.replace("type: toy", "type: toy\n    base_url: http://elsewhere")) == [
        "p.yaml:3:5: a toy provider lives at http://toy... (providers.mine)"
    ]
    # Fields that only other types take stay theirs.
    assert issues(text.replace("type: toy", "type: toy\n    base_url: http://toy\n    region: x")) == [
        "p.yaml:3:5: region: only for bedrock providers (providers.mine)"
    ]


def test_the_schema_lists_the_registered_types() -> None:
    assert "toy" not in policy_json_schema()["$defs"]["ProviderSpec"]["properties"]["type"]["enum"]
    router.register_provider(TOY)
    assert "toy" in policy_json_schema()["$defs"]["ProviderSpec"]["properties"]["type"]["enum"]


def test_a_taken_or_malformed_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'openai' is already registered"):
        router.register_provider(ProviderType("openai", ToyProvider))
    with pytest.raises(ValueError, match="lower-case letters"):
        router.register_provider(ProviderType("My Toy", ToyProvider))
    router.register_provider(TOY)
    replaced = ProviderType("toy", ToyProvider, needs=())
    assert router.register_provider(replaced, replace=True) is PROVIDER_TYPES["toy"]


def test_every_built_in_type_speaks_a_wire_the_fake_upstream_serves() -> None:
    wires = {"openai", "azure", "anthropic", "bedrock", "google"}
    assert {entry.wire for entry in PROVIDER_TYPES.entries()} == wires
    presets = [entry for entry in PROVIDER_TYPES.entries() if entry.preset is not None]
    assert all(entry.wire == "openai" and entry.needs == () for entry in presets)


def test_an_openai_compatible_service_of_ones_own_needs_no_adapter() -> None:
    router.register_provider(ProviderType.openai_compatible("acme", "http://127.0.0.1:9/v1", "ACME_API_KEY"))
    spec = ProviderSpec.model_validate({"type": "acme"})
    client = build_provider("acme", spec, clock=FakeClock(), environ={"ACME_API_KEY": "k"})
    assert isinstance(client, OpenAIProvider)
    assert str(client._client.base_url).rstrip("/") == "http://127.0.0.1:9/v1"
