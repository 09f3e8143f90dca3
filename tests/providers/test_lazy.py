"""Clients built when a request first needs them (`router.providers.lazy`): a router, `router explain`
and `import router` build and import nothing a request has not reached, credentials are still
checked when the policy loads, and a build that blocks does not hold up other routes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from router import Call, Chunk, Policy, PolicyError, ProviderType, Reply, Router, Usage, register_provider
from router.cli import main
from router.errors import AllTargetsFailed, ErrorKind
from router.policy.model import ProviderSpec
from router.providers.lazy import LazyProvider
from router.providers.pool import KeyPool
from router.providers.registry import PROVIDER_TYPES

USER = [{"role": "user", "content": "Hello"}]
ROOT = Path(__file__).parents[2]  # the shipped policies are under policies/


class Built:
    """What the toy types built, by provider name; `gate` holds a build (a slow SDK import) until set."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()


class Toy:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def complete(self, call: Call) -> Reply:
        return Reply(f"{self.name} says hi", Usage(1, 3), "stop")

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        yield Chunk(f"{self.name} streams")
        yield Chunk(finish_reason="stop", usage=Usage(1, 2))

    async def list_models(self) -> list[str]:
        return ["m"]

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    """Types `toy` (a key from TOY_KEY) and `broken` (its build raises), registered into a copy."""
    monkeypatch.setattr(PROVIDER_TYPES, "_entries", dict(PROVIDER_TYPES._entries))
    record = Built()

    def toy(name: str, spec: ProviderSpec, key: str | None) -> Toy:
        assert record.gate.wait(10)
        record.names.append(name)
        record.threads.append(threading.current_thread().name)
        return Toy(name)

    def broken(name: str, spec: ProviderSpec, key: str | None) -> Toy:
        record.names.append(name)
        raise RuntimeError("the SDK is not installed")

    register_provider(ProviderType("toy", toy, key_variable="TOY_KEY"))
    register_provider(ProviderType("broken", broken))
    monkeypatch.setenv("TOY_KEY", "toy-key")
    yield record
    record.gate.set()


POLICY: dict[str, Any] = {
    "providers": {"a": {"type": "toy"}, "b": {"type": "toy"}, "c": {"type": "broken"}},
    "targets": {
        "ta": {"provider": "a", "model": "m"},
        "tb": {"provider": "b", "model": "m"},
        "tc": {"provider": "c", "model": "m"},
    },
    "routes": {
        "first": {"targets": ["ta"]},
        "second": {"targets": ["tb"]},
        "fragile": {"targets": ["tc", "tb"]},
    },
}


async def test_a_client_is_built_when_a_request_first_reaches_its_provider(built: Built) -> None:
    async with Router(Policy.model_validate(POLICY)) as router:
        assert built.names == []
        assert (await router.complete("first", USER)).text == "a says hi"
        assert built.names == ["a"]  # b serves another route: not built
        streamed = [item async for item in router.stream("second", USER)]
        assert streamed[0] == "b streams"
        await router.complete("first", USER)
        assert built.names == ["a", "b"]  # once each
        assert all(name.startswith("router-build-") for name in built.threads)  # never on the loop
        client = router._providers["a"]
        assert isinstance(client, LazyProvider) and isinstance(client.built, Toy)
    assert client.built.closed


async def test_start_builds_every_client(built: Built) -> None:
    async with Router(Policy.model_validate(POLICY)) as router:
        await router.start()
        assert sorted(built.names) == ["a", "b", "c"]  # c's build failed: its calls will say so
        assert (await router.complete("fragile", USER)).target == "tb"
    assert sorted(built.names) == ["a", "b", "c"]


async def test_concurrent_first_calls_share_one_build(built: Built) -> None:
    built.gate.clear()
    async with Router(Policy.model_validate(POLICY)) as router:
        calls = [asyncio.create_task(router.complete("first", USER)) for _ in range(5)]
        await asyncio.sleep(0.01)
        built.gate.set()
        assert {c.text for c in await asyncio.gather(*calls)} == {"a says hi"}
    assert built.names == ["a"]


async def test_a_build_that_blocks_holds_up_only_its_own_route(built: Built) -> None:
    async with Router(Policy.model_validate(POLICY)) as router:
        await router.complete("second", USER)
        built.gate.clear()  # a's SDK "imports" until the gate opens
        slow = asyncio.create_task(router.complete("first", USER))
        await asyncio.sleep(0.01)
        assert (await asyncio.wait_for(router.complete("second", USER), 5)).text == "b says hi"
        assert not slow.done()
        built.gate.set()
        assert (await slow).text == "a says hi"


async def test_a_client_that_cannot_be_built_fails_over_every_time(built: Built) -> None:
    async with Router(Policy.model_validate(POLICY)) as router:
        completion = await router.complete("fragile", USER)
        assert completion.text == "b says hi"
        failed = completion.attempts[0]
        assert (failed.target, failed.outcome) == ("tc", ErrorKind.AUTH)
        assert "cannot build the broken client (RuntimeError)" in (failed.error or "")
        with pytest.raises(AllTargetsFailed):
            await router.complete("fragile", USER, targets=["tc"])
    assert built.names.count("c") == 1  # and logged once


async def test_a_client_never_needed_is_never_built_nor_closed(built: Built) -> None:
    router = Router(Policy.model_validate(POLICY))
    await router.aclose()
    assert built.names == []


def test_a_missing_key_still_fails_when_the_policy_loads(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOY_KEY")
    with pytest.raises(PolicyError, match="TOY_KEY"):
        Router(Policy.model_validate(POLICY))
    assert built.names == []


def test_explain_builds_no_client(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        providers:
          a: {type: toy}
          c: {type: broken}
        targets:
          ta: {provider: a, model: m}
          tc: {provider: c, model: m}
        routes:
          chat: {targets: [tc, ta]}
        """))  # fmt: skip
    result = CliRunner().invoke(main, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    assert "route chat" in result.output and "tc" in result.output
    assert built.names == []


def _modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `code`."""
    script = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    return set(run.stdout.split())


HEAVY = {"openai", "anthropic", "boto3", "botocore", "google", "aiohttp", "rich", "httpx2"}


def test_import_router_imports_no_sdk_and_no_engine() -> None:
    loaded = _modules_after("import router")
    assert not loaded & (HEAVY | {"pydantic", "asyncio", "yaml", "redis", "pybreaker"})


def test_the_command_line_imports_what_its_command_needs() -> None:
    assert not _modules_after("import router.cli") & (HEAVY | {"pydantic", "asyncio"})
    validated = _modules_after(
        "from click.testing import CliRunner\nfrom router.cli import main\n"
        "assert CliRunner().invoke(main, ['validate', 'policies/every-provider.yaml']).exit_code == 0"
    )
    assert not validated & (HEAVY | {"redis", "pybreaker", "asyncio"})


def test_explain_runs_where_an_sdk_cannot_be_imported() -> None:
    # Every shipped policy, with anthropic and boto3 made unimportable: explain needs neither.
    script = textwrap.dedent("""\
        import sys
        sys.modules["anthropic"] = sys.modules["boto3"] = None
        from click.testing import CliRunner
        from router.cli import main
        for name in ("every-provider", "cost-tiers", "latency-hedging", "primary-secondary"):
            result = CliRunner().invoke(main, ["explain", f"policies/{name}.yaml"])
            assert result.exit_code == 0, result.output
        assert "openai" not in sys.modules
        """)  # fmt: skip
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=ROOT)


def test_pybreaker_is_imported_before_a_routes_first_request_not_at_its_first_trip() -> None:
    # A trip comes in the middle of an outage: importing pybreaker then stalled the loop for 0.1-0.3 s.
    script = textwrap.dedent("""\
        import asyncio, sys
        from router import Policy, Router
        from router.testing.scripted import ScriptedProvider

        policy = Policy.model_validate({
            "providers": {"p": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
            "targets": {"t": {"provider": "p", "model": "m", "price": {"input": 1, "output": 1}}},
            "routes": {"chat": {"targets": ["t"]}},
        })

        async def main():
            async with Router(policy, providers={"p": ScriptedProvider("p")}) as router:
                assert "pybreaker" not in sys.modules
                await router.complete("chat", [{"role": "user", "content": "hi"}])
                assert "pybreaker" in sys.modules

        asyncio.run(main())
        """)  # fmt: skip
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=ROOT)


async def test_several_keys_build_one_pool_of_clients(built: Built) -> None:
    policy = {**POLICY, "providers": {**POLICY["providers"], "a": {"type": "toy", "api_keys": ["k1", "k2"]}}}
    async with Router(Policy.model_validate(policy)) as router:
        assert built.names == []
        assert (await router.complete("first", USER)).text == "a says hi"
        assert isinstance(router._providers["a"].built, KeyPool) and built.names == ["a", "a"]


async def test_a_reload_closes_a_replaced_client_that_was_built_and_builds_none(built: Built) -> None:
    async with Router(Policy.model_validate(POLICY)) as router:
        await router.complete("first", USER)
        old = router._providers["a"]
        changed = {
            **POLICY["providers"],
            "a": {"type": "toy", "headers": {"x": "1"}},
            "b": {"type": "toy", "headers": {"x": "1"}},
        }
        await router.areload(Policy.model_validate({**POLICY, "providers": changed}))
        assert router._providers["a"] is not old and built.names == ["a"]  # b was never built: nor is it now
        await router.aclose()
        assert isinstance(old, LazyProvider) and isinstance(old.built, Toy) and old.built.closed
    assert built.names == ["a"]
