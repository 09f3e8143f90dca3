"""Streamed chunks per second and per CPU-second: raw aiohttp, the openai SDK, the router, litellm.

    python benchmarks/streaming.py                # a table
    python benchmarks/streaming.py --json         # exactly one JSON object on stdout

A minimal aiohttp server in a child process (so that its CPU never lands in the client's) answers
every request with the same OpenAI-wire stream of `--words` one-word chunks (300 by default),
written at once: it costs a few microseconds a stream and never holds the client back (the
`FakeUpstream`, which writes event by event, was the bottleneck at 16 streams). `--concurrency` tasks (16)
open streams in a loop for `--duration` seconds after a warm-up that opens the connections, and
read each to its end. Each contender is measured once per round, in an order that rotates by
round:

- aiohttp_raw: aiohttp posting the request and reading the SSE lines, `json.loads` of each event:
  the baseline;
- sdk_default / sdk_fast: the bare openai SDK stream (`chat.completions.create(stream=True)`,
  typed chunk models) on its default httpx2 transport / on `AiohttpTransport`;
- router_stream: `Router.stream` on a one-target route with `first_token` and `idle` budgets (so
  that the per-chunk timers run, as they do in production);
- router_complete_stream: `Router.complete` on the same route, which reads the answer from a
  stream because the route watches the first token and the gaps;
- litellm: `litellm.acompletion(stream=True)` at the same upstream (the `bench` extra; without it
  the figures are null and a note says why).

Chunks are the text deltas read. Each contender's figure is its median over the rounds; each
ratio to aiohttp_raw is the median of the per-round ratios. Per CPU-second figures divide by this
process's CPU time (`time.process_time`), which holds the client alone.

Nothing here asserts a speed; see README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import platform
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import openai

# The scripts run as files (python benchmarks/NAME.py): their folder is on sys.path.
from _shared import (
    cpus,
    drain_litellm,
    package_version,
    quiet_litellm,
    rate_parser,
    report,
    rotating_rounds,
    units_per_second,
    upstream_process,
)
from aiohttp import web

from router import Policy, Router
from router.providers.transport import sdk_http_client

MODEL = "bench-stream"
MESSAGES = [{"role": "user", "content": "Tell me a story."}]
DEFAULT_WORDS = 300
DEFAULT_CONCURRENCY = 16
DEFAULT_DURATION = 2.0
DEFAULT_ROUNDS = 5
WARMUP = 0.5

CONTENDERS = (
    "aiohttp_raw",
    "sdk_default",
    "sdk_fast",
    "router_stream",
    "router_complete_stream",
    "litellm",
)
BASELINE = "aiohttp_raw"

# The team's goals: reported beside the figures, never asserted.
TARGETS = {"router_stream_vs_aiohttp_raw_cpu": (">=", 0.8)}

StreamCall = Callable[[], Awaitable[int]]  # reads one whole stream; returns the text chunks it read


def stream_body(words: int) -> bytes:
    """One OpenAI-wire stream of `words` one-word text chunks: a role chunk first, the finish reason
    and the usage last, as the API sends them."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL}

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"

    usage = {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": words + 5}
    return b"".join([
        event({"role": "assistant", "content": ""}),
        *(event({"content": f" word{index}" if index else "word0"}) for index in range(words)),
        event({}, "stop"),
        b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ])  # fmt: skip


def serve(words: int) -> None:
    """The upstream's process: every chat request gets the same stream, written at once, so that
    the server (a few microseconds a stream) never holds the client back. Runs until Ctrl-C."""
    body = stream_body(words)

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"stream server listening on http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _upstream_main(words: int) -> str:
    here = str(Path(__file__).resolve().parent)
    return f"import sys; sys.path.insert(0, {here!r}); import streaming; streaming.serve({words})"


# -- measuring ---------------------------------------------------------------------------------


# -- the contenders ----------------------------------------------------------------------------


def _policy(base_url: str) -> Policy:
    return Policy.model_validate({
        "providers": {"bench": {"type": "openai_compatible", "base_url": base_url, "api_key": "x"}},
        "targets": {"t": {"provider": "bench", "model": MODEL}},
        "routes": {"chat": {"targets": ["t"], "latency_budget": {"first_token": "30s", "idle": "30s"}}},
    })  # fmt: skip


def _checked(words: int, read: int) -> int:
    if read != words:
        raise RuntimeError(f"a stream delivered {read} chunks, not {words}")
    return read


@contextlib.asynccontextmanager
async def contender(name: str, base_url: str, words: int) -> AsyncIterator[StreamCall]:
    """The stream `name` stands for, with whatever it needs opened around it."""
    if name.startswith("router_"):
        router = Router(_policy(base_url), seed=0)
        try:
            if name == "router_stream":

                async def routed() -> int:
                    read = 0
                    async for item in router.stream("chat", MESSAGES):
                        if isinstance(item, str):
                            read += 1
                    return _checked(words, read)

                yield routed
            else:

                async def buffered() -> int:
                    completion = await router.complete("chat", MESSAGES)
                    return _checked(words, len(completion.text.split()))

                yield buffered
        finally:
            await router.aclose()
    elif name == "aiohttp_raw":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:
            yield _raw_stream(session, base_url, words)
    elif name == "litellm":
        yield _litellm_stream(base_url, words)
    else:
        http_client = sdk_http_client("aiohttp") if name == "sdk_fast" else None
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, http_client=http_client)
        try:

            async def bare() -> int:
                read = 0
                stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        read += 1
                return _checked(words, read)

            yield bare
        finally:
            await client.close()


def _raw_stream(session: aiohttp.ClientSession, base_url: str, words: int) -> StreamCall:
    url = f"{base_url}/chat/completions"
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}

    async def raw() -> int:
        read = 0
        async with session.post(url, data=body, headers=headers) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                choices = event["choices"]
                if choices and choices[0]["delta"].get("content"):
                    read += 1
        return _checked(words, read)

    return raw


def _litellm_stream(base_url: str, words: int) -> StreamCall:
    litellm = quiet_litellm()

    async def through_litellm() -> int:
        read = 0
        stream = await litellm.acompletion(
            model=f"openai/{MODEL}",
            messages=MESSAGES,
            api_base=base_url,
            api_key="x",
            stream=True,
            num_retries=0,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                read += 1
        return _checked(words, read)

    return through_litellm


async def measure(
    base_url: str, names: Sequence[str], words: int, concurrency: int, duration: float, rounds: int
) -> list[dict[str, tuple[float, float]]]:
    """Per round, each contender's (chunks per second, chunks per CPU-second)."""

    async def one(name: str) -> tuple[float, float]:
        async with contender(name, base_url, words) as call:
            return await units_per_second(call, concurrency, duration, WARMUP)

    per_round = await rotating_rounds(names, rounds, one)
    if "litellm" in names:
        await drain_litellm()
    return per_round


def summary(per_round: list[dict[str, tuple[float, float]]]) -> dict[str, float]:
    """Each contender's median chunks per second (and per CPU-second), and the median of its
    per-round ratios to the baseline."""
    figures: dict[str, float] = {}
    for name in per_round[0]:
        figures[f"{name}_chunks_per_s"] = round(statistics.median(f[name][0] for f in per_round))
        figures[f"{name}_chunks_per_cpu_s"] = round(statistics.median(f[name][1] for f in per_round))
        if name != BASELINE:
            for suffix, cpu in (("", 0), ("_cpu", 1)):
                ratios = (f[name][cpu] / f[BASELINE][cpu] for f in per_round)
                figures[f"{name}_vs_{BASELINE}{suffix}"] = round(statistics.median(ratios), 3)
    return figures


def run(words: int, concurrency: int, duration: float, rounds: int) -> dict[str, Any]:
    """Every figure, as the JSON object that `--json` prints.

    litellm runs in a phase of its own after the others, beside the baseline again: it leaves
    logging tasks on the loop and work on an executor thread that would slow whatever ran next.
    """
    notes: list[str] = []
    ours = [name for name in CONTENDERS if name != "litellm"]
    with_litellm = importlib.util.find_spec("litellm") is not None
    if not with_litellm:
        notes.append("litellm is not installed (pip install -e .[dev,bench]): its figures are null")
    with upstream_process(_upstream_main(words)) as base_url:
        figures = summary(asyncio.run(measure(base_url, ours, words, concurrency, duration, rounds)))
        if with_litellm:
            pair = [BASELINE, "litellm"]
            litellm = summary(asyncio.run(measure(base_url, pair, words, concurrency, duration, rounds)))
            figures.update({key: value for key, value in litellm.items() if key.startswith("litellm")})
            figures[f"litellm_phase_{BASELINE}_chunks_per_cpu_s"] = litellm[f"{BASELINE}_chunks_per_cpu_s"]
    versus_litellm = None
    if with_litellm:  # both against the baseline of their own phase
        ratio = figures["router_stream_vs_aiohttp_raw_cpu"] / figures["litellm_vs_aiohttp_raw_cpu"]
        versus_litellm = round(ratio, 3)
    others = [name for name in CONTENDERS if name != BASELINE]
    keys = [
        *(f"{name}_chunks_per_{unit}" for name in CONTENDERS for unit in ("s", "cpu_s")),
        *(f"{name}_vs_{BASELINE}{suffix}" for name in others for suffix in ("", "_cpu")),
        f"litellm_phase_{BASELINE}_chunks_per_cpu_s",
    ]
    return {
        **{key: figures.get(key) for key in keys},
        "router_stream_vs_sdk_default_cpu": round(
            figures["router_stream_chunks_per_cpu_s"] / figures["sdk_default_chunks_per_cpu_s"], 3
        ),
        "router_stream_vs_litellm_cpu": versus_litellm,
        "words": words,
        "concurrency": concurrency,
        "duration_s": duration,
        "rounds": rounds,
        "openai_version": package_version("openai"),
        "aiohttp_version": package_version("aiohttp"),
        "litellm_version": package_version("litellm"),
        "python": platform.python_version(),
        "machine": f"{cpus()} cores, {platform.machine()}, {platform.system()}",
        "cpu_count": cpus(),
        "notes": notes,
    }


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_table(result: dict[str, Any]) -> str:
    header = f"{'contender':<28} {'chunks/s':>10} {'chunks/CPU-s':>13} {'ratio':>7} {'ratio CPU':>10}"
    lines = [f"{header}  target"]
    for name in CONTENDERS:
        ratio_key = f"{name}_vs_{BASELINE}"
        target = TARGETS.get(f"{ratio_key}_cpu")
        lines.append(
            f"{name:<28} {_number(result[f'{name}_chunks_per_s'], 0):>10} "
            f"{_number(result[f'{name}_chunks_per_cpu_s'], 0):>13} "
            f"{_number(result.get(ratio_key), 3):>7} {_number(result.get(ratio_key + '_cpu'), 3):>10}"
            f"  {f'{target[0]} {target[1]:g} (CPU)' if target else ''}"
        )
    lines.append("")
    for key in ("router_stream_vs_sdk_default_cpu", "router_stream_vs_litellm_cpu"):
        lines.append(f"{key:<28} {_number(result[key], 3):>10}")
    lines.append("")
    lines.append(
        f"python {result['python']}, {result['machine']}, openai {result['openai_version']}, "
        f"aiohttp {result['aiohttp_version']}, litellm {result['litellm_version']}"
    )
    lines.append(
        f"{result['words']} chunks per stream, concurrency {result['concurrency']}, "
        f"{result['duration_s']:g} s per measurement, {result['rounds']} rounds"
    )
    lines.extend(f"note: {note}" for note in result["notes"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = rate_parser(
        __doc__, DEFAULT_CONCURRENCY, "streams read at once", DEFAULT_DURATION, DEFAULT_ROUNDS, WARMUP
    )
    parser.add_argument(
        "--words", type=int, default=DEFAULT_WORDS, help=f"chunks per stream (default {DEFAULT_WORDS})"
    )
    args = parser.parse_args(argv)
    if min(args.words, args.concurrency, args.rounds) < 1 or args.duration <= 0:
        parser.error("--words, --concurrency and --rounds must be at least 1; --duration above 0")
    report(args.json, lambda: run(args.words, args.concurrency, args.duration, args.rounds), render_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
