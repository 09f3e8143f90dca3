"""Hostile upstream bodies (issue 11): a gzip bomb, a huge answer, an endless one, an answer without a
finish reason. Each is a typed error of the target that sent it and a failover to the next, read
within `max_response_bytes` (decompressed, streams included) and within the route's deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zlib
from typing import Any

import pytest

from router import Completion, Policy, Router, StreamRestart
from router.errors import AllTargetsFailed, StreamBroken
from router.providers.transport import DEFAULT_MAX_RESPONSE_BYTES, _Inflater
from router.testing import FakeUpstream, Fault, parse_fault_spec

USER = [{"role": "user", "content": "Hello"}]
LIMIT = 4 * 1024 * 1024
BEDROCK = "anthropic.claude-3-haiku-20240307-v1:0"


def hostile_provider(upstream: FakeUpstream, wire: str, limit: int = LIMIT) -> dict[str, Any]:
    common = {"max_response_bytes": limit}
    if wire == "openai":
        return {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-test", **common}
    if wire == "anthropic":
        return {"type": "anthropic", "base_url": upstream.anthropic_base_url, "api_key": "ak-test", **common}
    return {
        "type": "bedrock",
        "region": "us-east-1",
        "base_url": upstream.bedrock_url,
        "aws_access_key_id": "AKIDTEST",
        "aws_secret_access_key": "secret-test",
        **common,
    }


def make_router(upstream: FakeUpstream, wire: str, *, limit: int = LIMIT, total: str = "20s") -> Router:
    model = BEDROCK if wire == "bedrock" else "bad-model"
    return Router(
        Policy.model_validate(
            {
                "providers": {
                    "hostile": hostile_provider(upstream, wire, limit),
                    "good": {"type": "openai_compatible", "base_url": upstream.base_url, "api_key": "k"},
                },
                "targets": {
                    "bad": {"provider": "hostile", "model": model},
                    "good": {"provider": "good", "model": "good-model"},
                },
                "routes": {
                    "chat": {
                        "targets": ["bad", "good"],
                        "retry": {"attempts": 1},
                        "latency_budget": {"total": total},
                    },
                    "alone": {
                        "targets": ["bad"],
                        "retry": {"attempts": 1},
                        "latency_budget": {"total": total},
                    },
                },
            }
        )
    )


async def answer(router: Router, route: str, streamed: bool) -> Completion:
    if not streamed:
        return await router.complete(route, USER)
    items = [item async for item in router.stream(route, USER)]
    result = items[-1]
    assert isinstance(result, Completion)
    assert all(isinstance(item, str | StreamRestart) for item in items[:-1])
    return result


HOSTILE = {
    "gzip-bomb-1gib": Fault.gzip_bomb(1 << 30),
    "huge-twice-the-bound": Fault.huge(2 * LIMIT),
    "endless": Fault.endless(),
    "no-finish-reason": Fault.no_finish(),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("wire", ["openai", "anthropic", "bedrock"])
@pytest.mark.parametrize("fault", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_a_hostile_body_is_a_typed_error_and_a_failover(
    fake_upstream: FakeUpstream, fault: Any, wire: str, streamed: bool
) -> None:
    fake_upstream.add_fault(BEDROCK if wire == "bedrock" else "bad-model", fault)
    fake_upstream.set_reply("good-model", "A healthy answer.")
    started = time.monotonic()
    async with make_router(fake_upstream, wire) as router:
        result = await answer(router, "chat", streamed)
    elapsed = time.monotonic() - started
    assert (result.target, result.text) == ("good", "A healthy answer.")
    [first, second] = result.attempts
    assert first.target == "bad" and first.outcome in ("server_error", "stream_broken"), first
    assert second.outcome == "ok"
    assert elapsed < 5.0


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_answers_within_the_bound_still_come_through_gzipped_or_large(
    fake_upstream: FakeUpstream, wire: str, streamed: bool
) -> None:
    fake_upstream.set_reply("bad-model", "Compressed, and fine.")
    fake_upstream.add_fault("bad-model", Fault.gzip_bomb(LIMIT // 2), times=1)
    fake_upstream.add_fault("bad-model", Fault.huge(LIMIT // 2), times=1)
    async with make_router(fake_upstream, wire) as router:
        gzipped = await answer(router, "alone", streamed)
        large = await answer(router, "alone", streamed)
    assert gzipped.text == "Compressed, and fine."
    assert large.text == "x" * (LIMIT // 2)


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_the_deadline_holds_while_an_endless_answer_is_read(
    fake_upstream: FakeUpstream, streamed: bool
) -> None:
    # 6.4 MB/s of answer, read for the whole budget: the bound is far, the deadline is what stops it.
    fake_upstream.add_fault("bad-model", Fault.endless(every=0.01))
    async with make_router(fake_upstream, "openai", limit=2**31, total="500ms") as router:
        started = time.monotonic()
        with pytest.raises((AllTargetsFailed, StreamBroken)):  # StreamBroken: after output began
            await answer(router, "alone", streamed)
        overshoot = time.monotonic() - started - 0.5
    print(f"\ndeadline overshoot while reading an endless answer: {overshoot * 1000:.0f} ms")
    assert overshoot < 0.05


def test_a_bomb_is_inflated_a_piece_at_a_time() -> None:
    bomb = zlib.compress(b" " * (64 << 20), 9)
    inflater = _Inflater("deflate")
    pieces = inflater.feed(bomb)
    assert len(next(pieces)) <= 64 * 1024  # the reader may stop here: nothing more was inflated
    assert sum(map(len, pieces)) + 64 * 1024 >= 64 << 20


def test_the_hostile_faults_have_a_text_form() -> None:
    assert parse_fault_spec("m=gzip_bomb").fault == Fault.gzip_bomb()
    assert parse_fault_spec("m=gzip_bomb:1000").fault == Fault.gzip_bomb(1000)
    assert parse_fault_spec("m=huge:5000000").fault == Fault.huge(5_000_000)
    assert parse_fault_spec("m=endless").fault == Fault.endless()
    assert parse_fault_spec("m=no_finish").fault == Fault.no_finish()
    assert (
        Policy.model_fields["providers"].annotation.__args__[1].model_fields["max_response_bytes"].default
        == DEFAULT_MAX_RESPONSE_BYTES
    )


RSS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, re, sys
    from router import Policy, Router

    USER = [{"role": "user", "content": "hi"}]

    def kilobytes(field: str) -> int:
        with open("/proc/self/status") as status:
            return int(re.search(field + r":\\s+(\\d+) kB", status.read()).group(1))

    def reset_peak() -> int:
        # Linux: "5" resets the peak resident set size (VmHWM) to the current one.
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return kilobytes("VmRSS")

    async def main(base_url: str, model: str, streamed: bool) -> None:
        def router(model: str) -> Router:
            return Router(Policy.model_validate({
                "providers": {"p": {"type": "openai", "base_url": base_url, "api_key": "k"}},
                "targets": {"t": {"provider": "p", "model": model}},
                "routes": {"chat": {"targets": ["t"], "retry": {"attempts": 1}}},
            }))

        async with router("warm") as warm:  # the SDK, the pools, the first parse
            await warm.complete("chat", USER)
            async for _ in warm.stream("chat", USER):
                pass
        async with router(model) as hostile:
            before, refused = reset_peak(), False
            try:
                if streamed:
                    async for _ in hostile.stream("chat", USER):
                        pass
                else:
                    await hostile.complete("chat", USER)
            except Exception:
                refused = True
            print(json.dumps({"growth": (kilobytes("VmHWM") - before) * 1024, "refused": refused}))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "stream"))
    """
)


def test_rss_grows_by_about_the_bound_while_bombs_and_huge_answers_are_refused(
    fake_upstream: FakeUpstream,
) -> None:
    """Each client in a process of its own, so that the peak RSS measured is that call's."""
    fake_upstream.add_fault("bomb", Fault.gzip_bomb(1 << 30))
    fake_upstream.add_fault("huge", Fault.huge(64 << 20))
    cases = [(model, mode) for model in ("bomb", "huge") for mode in ("complete", "stream")]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RSS_SCRIPT, fake_upstream.base_url, model, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for model, mode in cases
    ]
    growth = {}
    for case, run in zip(cases, runs, strict=True):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-2000:]
        figures = json.loads(out.strip().splitlines()[-1])
        assert figures["refused"]
        growth[case] = figures["growth"]
    print("\npeak RSS growth, MiB: " + ", ".join(f"{m} {k} {g / 2**20:.1f}" for (m, k), g in growth.items()))
    bound = DEFAULT_MAX_RESPONSE_BYTES
    # Read and dropped: the bytes read, and the interpreter's own small change.
    for case in [("bomb", "complete"), ("bomb", "stream"), ("huge", "complete")]:
        assert growth[case] <= 1.1 * bound, case
    # A streamed answer's text is also held for continuing or restarting it: joined once from its
    # pieces (both held for the join), then that one string serves every reader (it was 3.2x).
    assert growth[("huge", "stream")] <= 2.5 * bound
