"""Presets, credentials at load time, and key pools."""

from __future__ import annotations

import asyncio
import typing

import pytest

from router import ErrorKind, PolicyError, ProviderError
from router.policy.model import ProviderSpec
from router.providers import build_provider
from router.providers.base import Call, Chunk
from router.providers.openai import OpenAIProvider
from router.providers.pool import KeyPool, key_id
from router.providers.registry import PROVIDER_TYPES
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

CALL = Call("m", [{"role": "user", "content": "hi"}], 5.0)


def spec(**fields: typing.Any) -> ProviderSpec:
    return ProviderSpec.model_validate(fields)


def test_every_preset_builds_an_openai_client_at_its_address():
    presets = [entry for entry in PROVIDER_TYPES.entries() if entry.preset is not None]
    assert {entry.name for entry in presets} >= {"groq", "mistral", "openrouter", "gemini_openai", "ollama"}
    for entry in presets:
        assert entry.preset is not None
        environ = {entry.key_variable: "k"} if entry.key_variable else {}
        provider = build_provider("p", spec(type=entry.name), clock=FakeClock(), environ=environ)
        assert isinstance(provider, OpenAIProvider)
        assert str(provider._client.base_url).rstrip("/") == entry.preset.base_url


def test_a_preset_brings_its_base_url_headers_and_key_variable():
    provider = build_provider(
        "or", spec(type="openrouter"), clock=FakeClock(), environ={"OPENROUTER_API_KEY": "k"}
    )
    assert isinstance(provider, OpenAIProvider)
    client = provider._client
    assert str(client.base_url).rstrip("/") == "https://openrouter.ai/api/v1"
    assert client.default_headers["X-Title"] == "router"


def test_the_policy_base_url_wins_over_the_preset():
    provider = build_provider(
        "g", spec(type="vllm", base_url="http://10.0.0.5:9000/v1"), clock=FakeClock(), environ={}
    )
    assert str(provider._client.base_url).startswith("http://10.0.0.5:9000/v1")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "variable"),
    [("groq", "GROQ_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")],
)
def test_a_missing_key_names_the_variable_at_load_time(kind, variable):
    with pytest.raises(PolicyError) as caught:
        build_provider("p", spec(type=kind), clock=FakeClock(), environ={}, source="policy.yaml")
    [issue] = caught.value.issues
    assert variable in issue.message and issue.path == "providers.p.api_key" and issue.file == "policy.yaml"


def test_local_presets_need_no_key():
    for kind in ("ollama", "vllm", "lmstudio", "openai_compatible"):
        fields = {"type": kind} | (
            {"base_url": "http://127.0.0.1:9/v1"} if kind == "openai_compatible" else {}
        )
        assert build_provider("p", spec(**fields), clock=FakeClock(), environ={}) is not None


def test_several_keys_make_a_pool():
    provider = build_provider("p", spec(type="groq", api_keys=["k1", "k2"]), clock=FakeClock(), environ={})
    assert isinstance(provider, KeyPool) and len(provider.key_states) == 2


def pool(clock: FakeClock, *members: ScriptedProvider) -> KeyPool:
    return KeyPool("p", [(f"secret-{i}", member) for i, member in enumerate(members)], clock, max_rest=300.0)


async def test_pool_spreads_calls_round_robin():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    keys = pool(clock, a, b)
    for _ in range(4):
        await keys.complete(CALL)
    assert (a.count(), b.count()) == (2, 2)


async def test_a_429_moves_to_the_next_key_and_rests_the_first():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=10.0))
    keys = pool(clock, a, b)
    assert (await keys.complete(CALL)).text == "ok"
    assert (a.count(), b.count()) == (1, 1)
    assert keys.key_states == {key_id("secret-0"): "resting", key_id("secret-1"): "serving"}
    await keys.complete(CALL)
    assert (a.count(), b.count()) == (1, 2)  # the resting key is skipped
    clock.advance(10.0)
    await keys.complete(CALL)
    await keys.complete(CALL)
    assert a.count() == 2


async def test_a_401_benches_the_key_while_the_others_serve(caplog):
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.AUTH, status=401))
    keys = pool(clock, a, b)
    for _ in range(3):
        await keys.complete(CALL)
    assert (a.count(), b.count()) == (1, 3)
    assert keys.key_states[key_id("secret-0")] == "benched"
    assert key_id("secret-0") in caplog.text and "secret-0" not in caplog.text.replace(key_id("secret-0"), "")


async def test_when_every_key_is_limited_the_last_error_goes_to_the_engine():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=3.0))
    b.script("m", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=5.0))
    keys = pool(clock, a, b)
    with pytest.raises(ProviderError) as caught:
        await keys.complete(CALL)
    assert caught.value.kind is ErrorKind.RATE_LIMITED and caught.value.retry_after == 5.0
    with pytest.raises(ProviderError, match="no key can serve now"):
        await keys.complete(CALL)


async def test_other_errors_are_not_the_key_s_fault():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.SERVER_ERROR, status=500))
    with pytest.raises(ProviderError):
        await pool(clock, a, b).complete(CALL)
    assert b.count() == 0


async def test_pool_streams_swap_keys_only_before_the_first_chunk():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.RATE_LIMITED, status=429))
    b.script("m", Step.reply("two words"))
    chunks = [chunk async for chunk in pool(clock, a, b).stream(CALL)]
    assert "".join(c.text for c in chunks) == "two words" and chunks[-1].finish_reason == "stop"


async def test_a_huge_retry_after_rests_a_key_no_longer_than_the_breaker_s_longest_wait():
    clock = FakeClock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    a.script("m", Step.fail(ErrorKind.RATE_LIMITED, status=429, retry_after=864000.0))  # 10 days
    keys = KeyPool("p", [("secret-0", a), ("secret-1", b)], clock, max_rest=120.0)
    await keys.complete(CALL)
    assert keys.key_states[key_id("secret-0")] == "resting"
    clock.advance(120.0)
    assert keys.key_states[key_id("secret-0")] == "serving"


def test_a_pool_s_keys_rest_at_most_the_provider_s_max_reset_timeout():
    provider = build_provider(
        "p",
        spec(type="groq", api_keys=["k1", "k2"], breaker={"max_reset_timeout": "90s"}),
        clock=FakeClock(),
        environ={},
    )
    assert isinstance(provider, KeyPool) and provider._max_rest == 90.0


class _StreamObject:
    """A stream object (not a generator): its first chunk fails, or never comes. Records its closing."""

    def __init__(self, clock: FakeClock, error: ProviderError | None = None) -> None:
        self.clock = clock
        self.error = error
        self.closed = False

    def __aiter__(self) -> _StreamObject:
        return self

    async def __anext__(self) -> Chunk:
        if self.error is not None:
            raise self.error
        await self.clock.sleep(1e9)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def test_a_pool_stream_cancelled_before_its_first_chunk_is_closed():
    clock = FakeClock(auto_advance=False)
    a = ScriptedProvider("a")
    hanging = _StreamObject(clock)
    a.stream = lambda call: hanging  # type: ignore[method-assign]
    keys = pool(clock, a, ScriptedProvider("b"))
    task = asyncio.ensure_future(anext(keys.stream(CALL)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hanging.closed
    assert set(keys.key_states.values()) == {"serving"}


async def test_a_pool_stream_whose_first_chunk_fails_is_closed_before_the_next_key():
    clock = FakeClock()
    a = ScriptedProvider("a")
    limited = _StreamObject(clock, ProviderError(ErrorKind.RATE_LIMITED, "slow down", status=429))
    a.stream = lambda call: limited  # type: ignore[method-assign]
    chunks = [chunk async for chunk in pool(clock, a, ScriptedProvider("b")).stream(CALL)]
    assert "".join(c.text for c in chunks) == "ok" and limited.closed
