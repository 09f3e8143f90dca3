"""Chains across the wires (OpenAI, Anthropic, Bedrock, Google), each through its real SDK, on one
loopback fake upstream."""

from __future__ import annotations

from typing import Any

import pytest

from router import Completion, Policy, Router, StreamRestart, Usage
from router.testing import FakeUpstream, Fault
from router.testing.wires.google import TOKEN_PATH
from tests.providers.test_google import service_account_file

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
USER = [{"role": "user", "content": "Hello there"}]


def policy_data(upstream: FakeUpstream, *, prefill: bool = False) -> dict[str, Any]:
    """Targets gpt (OpenAI wire), claude (Anthropic) and bedrock (Bedrock), declaring `prefill` or not."""
    capabilities = {"prefill": prefill}
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-test"},
            "anthropic": {"type": "anthropic", "base_url": upstream.anthropic_base_url, "api_key": "ak-test"},
            "bedrock": {
                "type": "bedrock",
                "region": "us-east-1",
                "base_url": upstream.bedrock_url,
                "aws_access_key_id": "AKIDTEST",
                "aws_secret_access_key": "secret-test",
            },
        },
        "targets": {
            name: {
                "provider": provider,
                "model": MODELS[name],
                "price": dict(zip(("input", "output"), PRICES[name], strict=True)),
                "capabilities": capabilities,
            }
            for name, provider in (("gpt", "openai"), ("claude", "anthropic"), ("bedrock", "bedrock"))
        },
        "routes": {"chat": {"targets": ["gpt", "claude", "bedrock"], "retry": {"attempts": 1}}},
    }


MODELS = {"gpt": "gpt-4o", "claude": "claude-haiku-4-5", "bedrock": BEDROCK_MODEL}
PRICES = {"gpt": (2.5, 10.0), "claude": (1.0, 5.0), "bedrock": (0.25, 1.25)}


def chain(upstream: FakeUpstream) -> Router:
    return Router(Policy.model_validate(policy_data(upstream)))


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_down_then_anthropic_down_answers_from_bedrock(fake_upstream, streamed):
    fake_upstream.add_fault("gpt-4o", Fault.unavailable())
    fake_upstream.add_fault("claude-haiku-4-5", Fault.overloaded())
    fake_upstream.set_reply(BEDROCK_MODEL, "Bedrock answers.")
    async with chain(fake_upstream) as router:
        if streamed:
            items = [item async for item in router.stream("chat", USER)]
            result = items[-1]
            assert "".join(items[:-1]) == "Bedrock answers."
        else:
            result = await router.complete("chat", USER)
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


# -- a stream that breaks after output began, continued or restarted on another wire ------------

# Events each wire sends before its first word: OpenAI's role delta; Anthropic's message_start,
# ping and content_block_start; Bedrock's messageStart.
LEAD = {"gpt": 1, "claude": 3, "bedrock": 1}
# Each wire breaks once, and once takes over from another.
PAIRS = [("gpt", "claude"), ("claude", "bedrock"), ("bedrock", "gpt")]
ANSWER = "one two three four five six"
OTHER = "A whole new answer from the fallback."
FAULTS = {
    "cut": lambda lead: Fault.cut(lead + 2),  # two words, then the connection closes
    "stall": lambda lead: Fault.stall(lead + 2, 5.0),  # two words, then silence past the idle budget
}


def pair(upstream: FakeUpstream, broken: str, fallback: str, *, prefill: bool) -> Router:
    data = policy_data(upstream, prefill=prefill)
    data["routes"] = {
        "chat": {"targets": [broken, fallback], "retry": {"attempts": 1}, "latency_budget": {"idle": "1s"}}
    }
    return Router(Policy.model_validate(data))


async def broken_stream(
    upstream: FakeUpstream, broken: str, fallback: str, fault: str, *, prefill: bool
) -> list[Any]:
    """Every item `stream()` yields when `broken` breaks after "one two" and `fallback` is next."""
    upstream.set_reply(MODELS[broken], ANSWER)
    upstream.set_reply(MODELS[fallback], OTHER)
    upstream.add_fault(MODELS[broken], FAULTS[fault](LEAD[broken]))
    async with pair(upstream, broken, fallback, prefill=prefill) as router:
        return [item async for item in router.stream("chat", USER)]


def estimated(text: str) -> int:
    """Tokens as the fake upstream counts them, and as the router estimates a broken stream's output."""
    return len(text) // 4 + 1


def cost(target: str, usage: Usage) -> float:
    price_in, price_out = PRICES[target]
    return (usage.input_tokens * price_in + usage.output_tokens * price_out) * 1e-6


@pytest.mark.parametrize("fault", ["cut", "stall"])
@pytest.mark.parametrize(("broken", "fallback"), PAIRS)
async def test_a_broken_stream_goes_on_seamlessly_on_a_prefill_target(fake_upstream, broken, fallback, fault):
    items = await broken_stream(fake_upstream, broken, fallback, fault, prefill=True)
    final = items[-1]
    assert isinstance(final, Completion)
    assert not any(isinstance(item, StreamRestart) for item in items)
    assert "".join(items[:-1]) == ANSWER == final.text  # "one two" from one wire, the rest from another
    assert items[:2] == ["one", " two"]
    assert [(a.target, a.outcome) for a in final.attempts] == [(broken, "stream_broken"), (fallback, "ok")]
    assert ("stalled" in (final.attempts[0].error or "")) == (fault == "stall")
    assert final.target == fallback and final.model == MODELS[fallback]
    # Both parts' usage: the broken one estimated (it broke before reporting), the fallback's as reported.
    first = Usage(len("Hello there") // 4 + 5, estimated("one two"))  # the router's estimate of the prompt
    second = Usage(estimated("Hello there" + "one two"), estimated(" three four five six"))
    assert final.usage == Usage(
        first.input_tokens + second.input_tokens, first.output_tokens + second.output_tokens
    )
    assert final.cost_usd == pytest.approx(cost(broken, first) + cost(fallback, second))
    assert [record.wire for record in fake_upstream.log if record.method == "POST"] == [
        {"gpt": "openai", "claude": "anthropic", "bedrock": "bedrock"}[name] for name in (broken, fallback)
    ]


@pytest.mark.parametrize("fault", ["cut", "stall"])
@pytest.mark.parametrize(("broken", "fallback"), PAIRS)
async def test_a_broken_stream_restarts_with_a_signal_where_no_target_takes_a_prefill(
    fake_upstream, broken, fallback, fault
):
    items = await broken_stream(fake_upstream, broken, fallback, fault, prefill=False)
    assert items[:2] == ["one", " two"]
    restart = items[2]
    assert isinstance(restart, StreamRestart)
    assert (restart.broken, restart.replaced, restart.target) == (broken, "one two", fallback)
    final = items[-1]
    assert "".join(items[3:-1]) == OTHER == final.text  # the whole new answer, and only it
    assert [(a.target, a.outcome) for a in final.attempts] == [(broken, "stream_broken"), (fallback, "ok")]
    assert final.usage == Usage(estimated("Hello there"), estimated(OTHER))


@pytest.mark.parametrize("fault", ["cut", "stall"])
@pytest.mark.parametrize(("broken", "fallback"), PAIRS)
async def test_a_target_that_declares_prefill_but_refuses_it_restarts_the_answer(
    fake_upstream, broken, fallback, fault
):
    fake_upstream.add_fault(MODELS[fallback], Fault.reject_prefill())
    items = await broken_stream(fake_upstream, broken, fallback, fault, prefill=True)
    restart = next(item for item in items if isinstance(item, StreamRestart))
    assert (restart.broken, restart.replaced, restart.target) == (broken, "one two", fallback)
    final = items[-1]
    assert final.text == OTHER and "".join(items[items.index(restart) + 1 : -1]) == OTHER
    assert [(a.target, a.outcome, a.status) for a in final.attempts] == [
        (broken, "stream_broken", None),
        (fallback, "bad_request", 400),  # the refusal is in the trail, never the request's end
        (fallback, "ok", None),
    ]
    assert [record.fault for record in fake_upstream.log if record.method == "POST"][1:] == [
        "reject_prefill",
        "ok",
    ]


# -- Google: the Gemini API behind OpenAI, and Vertex AI in a chain of its own ------------------

GEMINI_MODEL = "gemini-2.5-flash"


async def answer(router: Router, streamed: bool) -> Completion:
    if not streamed:
        return await router.complete("chat", USER)
    items = [item async for item in router.stream("chat", USER)]
    assert isinstance(items[-1], Completion) and "".join(items[:-1]) == items[-1].text
    return items[-1]


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_down_answers_from_gemini(fake_upstream, streamed):
    fake_upstream.add_fault("gpt-4o", Fault.unavailable())
    fake_upstream.set_reply(GEMINI_MODEL, "Gemini answers.")
    data = policy_data(fake_upstream)
    base_url = fake_upstream.google_base_url
    data["providers"]["google"] = {"type": "gemini", "base_url": base_url, "api_key": "g"}
    price = {"input": 0.3, "output": 2.5}
    data["targets"]["gemini"] = {"provider": "google", "model": GEMINI_MODEL, "price": price}
    data["routes"] = {"chat": {"targets": ["gpt", "gemini"], "retry": {"attempts": 1}}}
    async with Router(Policy.model_validate(data)) as router:
        result = await answer(router, streamed)
    assert (result.text, result.target, result.provider, result.model) == (
        "Gemini answers.", "gemini", "google", GEMINI_MODEL,
    )  # fmt: skip
    assert [(a.target, a.outcome, a.status) for a in result.attempts] == [
        ("gpt", "server_error", 503),
        ("gemini", "ok", None),
    ]
    usage = result.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert result.cost_usd == pytest.approx(usage.input_tokens * 0.3e-6 + usage.output_tokens * 2.5e-6)
    assert [record.wire for record in fake_upstream.log] == ["openai", "google"]


@pytest.mark.parametrize("streamed", [False, True])
async def test_vertex_in_a_chain_of_its_own(fake_upstream, tmp_path, private_key_pem, streamed):
    """Two Vertex AI regions on one service account: the first is out of quota, the second answers."""
    key_file = service_account_file(tmp_path, fake_upstream.google_base_url + TOKEN_PATH, private_key_pem)
    fake_upstream.add_fault("gemini-2.5-pro", Fault.rate_limited(retry_after=30))
    fake_upstream.set_reply(GEMINI_MODEL, "Vertex answers.")
    regions = {"vertex-us": "us-central1", "vertex-eu": "europe-west4"}
    providers = {
        name: {
            "type": "vertex",
            "base_url": fake_upstream.google_base_url,
            "project": "router-test",
            "location": location,
            "credentials_file": str(key_file),
        }
        for name, location in regions.items()
    }
    targets = {
        "pro": {"provider": "vertex-us", "model": "gemini-2.5-pro"},
        "flash": {"provider": "vertex-eu", "model": GEMINI_MODEL},
    }
    routes = {"chat": {"targets": ["pro", "flash"], "retry": {"attempts": 1}}}
    policy = Policy.model_validate({"providers": providers, "targets": targets, "routes": routes})
    async with Router(policy) as router:
        result = await answer(router, streamed)
    assert (result.text, result.target, result.provider) == ("Vertex answers.", "flash", "vertex-eu")
    assert [(a.target, a.outcome, a.status) for a in result.attempts] == [
        ("pro", "rate_limited", 429),
        ("flash", "ok", None),
    ]
    assert [record.path.split("/")[5] for record in fake_upstream.log] == ["us-central1", "europe-west4"]
