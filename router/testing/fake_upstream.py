"""A loopback fake LLM upstream with fault injection: the OpenAI, Azure OpenAI, Anthropic and Bedrock wires.

`FakeUpstream` is a real HTTP server (aiohttp) on its own thread and event loop, so it serves
sync code (boto3), any test's event loop and `complete_sync` alike. One server speaks every
wire, so one test can put targets of several providers on it::

    with FakeUpstream() as up:
        up.add_fault("gpt-4o", Fault.rate_limited(retry_after=1), times=1)
        client = openai.AsyncOpenAI(base_url=up.base_url, api_key="test", max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=up.anthropic_base_url, api_key="test", max_retries=0)
        ...
        assert [r.fault for r in up.log] == ["http_429", "ok"]

Routes: OpenAI `POST /v1/chat/completions` and `GET /v1/models` (`base_url`); Azure OpenAI
`POST /openai/deployments/{deployment}/chat/completions?api-version=...` and `GET /openai/models`
(`azure_endpoint`); Anthropic `POST /v1/messages` and `GET /v1/models` with an
`anthropic-version` header (`anthropic_base_url`); Bedrock `POST /model/{modelId}/converse`,
`POST /model/{modelId}/converse-stream` and `GET /foundation-models` (`bedrock_url`); Google's
Gemini API and Vertex AI `POST .../models/{model}:generateContent`, `:streamGenerateContent` and
their models listings (`google_base_url`, see `router.testing.wires.google`). The model a fault
rule names is the request's model, Azure's deployment or Bedrock's model id.

This module is the wire-agnostic core: it reads the request through its wire
(`router.testing.wires`), picks the fault, logs, and carries out the faults that are the same
everywhere (reset, hang, delays, where a stream breaks); the wire renders every body and event.
Replies are deterministic (`"Hello from <model>."` unless `set_reply` or `set_tool_call` says
otherwise), and so is every random choice (error rates, latency), from the `seed`. A request
ending with an assistant message (a prefill) is answered with the rest of the reply it begins
(the model's own, else another model's): a stream another model began can be continued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import random
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TextIO

from aiohttp import web

from router.testing._fault_spec import parse_fault_spec
from router.testing.faults import (
    ContentFilter,
    Cut,
    Delay,
    EmptyChoices,
    Endless,
    Fault,
    FaultRule,
    FaultSchedule,
    GzipBomb,
    Hang,
    Html,
    HttpError,
    Huge,
    InStreamError,
    InvalidJson,
    Latency,
    Malformed,
    NoDone,
    NoFinish,
    Rejection,
    Reset,
    SlowFirstToken,
    Stall,
    Truncated,
)
from router.testing.wires import (
    Answer,
    AnthropicWire,
    AzureWire,
    BadRequest,
    BedrockWire,
    Chat,
    GoogleWire,
    OpenAIWire,
    Wire,
)
from router.testing.wires.base import Finish, Stream, continuation, split_words
from router.testing.wires.bedrock import GUARDRAIL_MESSAGE

__all__ = ["FakeUpstream", "RequestRecord", "client_url", "run_forever", "serve"]

# Where wires share a path (`GET /v1/models`), the first that accepts the request answers it.
_WIRES: tuple[Wire, ...] = (AnthropicWire(), OpenAIWire(), AzureWire(), BedrockWire(), GoogleWire())
# Handlers still running when the server stops get this long before they are cancelled;
# ours end as soon as the stop is signalled, so this only bounds a misbehaving one.
_SHUTDOWN_TIMEOUT = 1.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake upstream received, as the attempt log keeps it.

    `at` is seconds since `start()` (monotonic); `fault` is the injected fault's name or `"ok"`;
    `status` is the HTTP status sent, None when no response head was sent (reset, hang);
    `wire` is the protocol it came on: `"openai"`, `"azure"`, `"anthropic"`, `"bedrock"` or `"google"`.
    """

    at: float
    method: str
    path: str
    model: str
    stream: bool
    fault: str
    status: int | None
    wire: str


@dataclass(frozen=True, slots=True)
class _ToolReply:
    name: str
    arguments: str


class FakeUpstream:
    """A fake LLM upstream on loopback speaking several wires, with faults injected per model.

    `start()` blocks until it listens (port 0: any free port) and returns self; `stop()` ends
    every request in flight, hanging ones included, and frees the port and the thread.
    Faults are tried in the order added; the first one that strikes answers the request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = 0,
        faults: Iterable[FaultRule] = (),
        models: Iterable[str] = (),
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._schedule = FaultSchedule(faults, random.Random(seed))
        self._replies: dict[str, str | _ToolReply] = {}
        self._models: dict[str, None] = dict.fromkeys(models)
        self._models.update((rule.model, None) for rule in self._schedule.rules if rule.model != "*")
        self._log: list[RequestRecord] = []
        self._ids = itertools.count(1)
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run_loop, args=(loop,), name="FakeUpstream", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        thread.name = f"FakeUpstream:{self._port}"
        return self

    def stop(self) -> None:
        """Stop serving; requests in flight (hanging, stalled, delayed) are cut off at once."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What `openai.AsyncOpenAI(base_url=...)` takes, e.g. `http://127.0.0.1:PORT/v1`."""
        return client_url(self._root(), OpenAIWire.name)

    @property
    def azure_endpoint(self) -> str:
        """What `openai.AsyncAzureOpenAI(azure_endpoint=...)` takes: `http://127.0.0.1:PORT`."""
        return self._root()

    @property
    def anthropic_base_url(self) -> str:
        """What `anthropic.AsyncAnthropic(base_url=...)` takes: `http://127.0.0.1:PORT`."""
        return self._root()

    @property
    def bedrock_url(self) -> str:
        """What boto3's `client("bedrock-runtime" or "bedrock", endpoint_url=...)` takes."""
        return self._root()

    @property
    def google_base_url(self) -> str:
        """What google-genai's `HttpOptions(base_url=...)` takes, for the Gemini API and Vertex AI."""
        return self._root()

    def _root(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def elapsed(self) -> float:
        """Seconds since `start()`, on the clock that fault windows and the log use."""
        return time.monotonic() - self._started_at

    # --- configuration -----------------------------------------------------------------------

    def add_fault(
        self,
        model: str,
        fault: Fault,
        *,
        times: int | None = None,
        after: int = 0,
        start: float | None = None,
        end: float | None = None,
        probability: float = 1.0,
    ) -> FaultRule:
        """Inject `fault` into requests for `model` (`"*"`: any); see `FaultRule` for the scope.

        `times`/`after` count requests to the model; `start`/`end` are seconds since `start()`
        (`end=5`: down for the first five seconds, then healthy); `probability` is an error rate.
        """
        rule = FaultRule(
            model, fault, times=times, after=after, start=start, end=end, probability=probability
        )
        with self._lock:
            self._schedule.add(rule)
            if model != "*":
                self._models.setdefault(model)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._schedule.clear()

    @property
    def faults(self) -> list[FaultRule]:
        with self._lock:
            return self._schedule.rules

    def set_reply(self, model: str, text: str) -> None:
        """Answer `model` with `text` (streams split it into a chunk per word)."""
        with self._lock:
            self._replies[model] = text
            self._models.setdefault(model)

    def set_tool_call(self, model: str, name: str, arguments: Mapping[str, Any]) -> None:
        """Answer `model` with a call of tool `name` on every wire, until `set_reply` says otherwise.

        OpenAI: `tool_calls`, finish `tool_calls`; Anthropic: a `tool_use` block, `tool_use`;
        Bedrock: a `toolUse` block, `tool_use`. Streams split the JSON arguments over several deltas.
        """
        reply = _ToolReply(name, json.dumps(dict(arguments)))
        with self._lock:
            self._replies[model] = reply
            self._models.setdefault(model)

    # --- attempt log -------------------------------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, model: str | None = None) -> int:
        """Chat requests (completions, messages, converse) received on any wire, for `model` or all."""
        with self._lock:
            return sum(
                1
                for record in self._log
                if record.method == "POST" and (model is None or record.model == model)
            )

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    # --- the server, on its own loop ---------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Nothing should be left once the runner is cleaned up; if something is, end it here
            # rather than leave "Task was destroyed but it is pending" to the garbage collector.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _astart(self) -> None:
        app = web.Application()
        models_paths: dict[str, list[Wire]] = {}
        for wire in _WIRES:
            for path in wire.chat_paths:
                app.router.add_post(path, self._chat_handler(wire))
            models_paths.setdefault(wire.models_path, []).append(wire)
            for method, path, handler in wire.routes():
                app.router.add_route(method, path, handler)
        for path, wires in models_paths.items():
            app.router.add_get(path, self._models_handler(wires))
        # handler_cancellation: a hanging request ends when its client gives up.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._stopping = asyncio.Event()
        self._started_at = time.monotonic()
        self._runner = runner

    async def _astop(self) -> None:
        runner, self._runner = self._runner, None
        if self._stopping is not None:
            self._stopping.set()
        if runner is not None:
            await runner.cleanup()

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True when the server began stopping meanwhile (the caller must bail out)."""
        assert self._stopping is not None
        if seconds <= 0:
            return self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _record(
        self, request: web.Request, wire: Wire, model: str, stream: bool, fault: str, status: int | None
    ) -> None:
        record = RequestRecord(
            at=time.monotonic() - self._started_at,
            method=request.method,
            path=request.path,
            model=model,
            stream=stream,
            fault=fault,
            status=status,
            wire=wire.name,
        )
        with self._lock:
            self._log.append(record)

    def _models_handler(self, wires: list[Wire]) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            wire = next((w for w in wires if w.accepts(request)), wires[-1])
            with self._lock:
                models = list(self._models)
            self._record(request, wire, "", False, "ok", 200)
            return web.json_response(wire.models(models))

        return handle

    def _chat_handler(self, wire: Wire) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await self._chat(wire, request)
            except ConnectionError:
                # The client walked away mid-response (a cancelled stream, a closed connection):
                # nothing left to answer, and nothing wrong here, so no traceback. A cancellation
                # (aiohttp's handler_cancellation) passes through: aiohttp ends it quietly.
                return _abort(request)

        return handle

    async def _chat(self, wire: Wire, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        chat = await self._read(wire, request)
        if not isinstance(chat, Chat):
            return chat
        fault, latency, reply, number = self._choose(chat)
        fault_name = fault.name if fault else "ok"
        if isinstance(fault, Rejection) and not (isinstance(fault, ContentFilter) and wire.filters_in_band):
            rejected = wire.reject(fault, chat.model)
            self._record(request, wire, chat.model, chat.stream, fault_name, rejected.status)
            return rejected
        status = None if isinstance(fault, Reset | Hang) else 200
        self._record(request, wire, chat.model, chat.stream, fault_name, status)

        answer = _answer(chat, reply, number, fault, started)
        response = await self._misbehave(request, wire, answer, fault, latency)
        if response is not None:
            return response
        if chat.stream:
            return await self._stream(request, wire, answer, fault)
        return web.json_response(wire.body(answer), headers=wire.headers(answer))

    async def _read(self, wire: Wire, request: web.Request) -> Chat | web.Response:
        """The chat request, or the 400 answering a request the wire refuses (logged)."""
        try:
            try:
                body = json.loads(await request.read())
            except ValueError as exc:
                raise BadRequest(f"the body is not JSON: {exc}") from None
            return wire.read(request, body)
        except BadRequest as exc:
            response = wire.reject(HttpError(400, f"Invalid request: {exc}", code=exc.code), "")
            self._record(request, wire, "", False, "invalid_request", response.status)
            return response

    def _choose(self, chat: Chat) -> tuple[Fault | None, float, str | _ToolReply, int]:
        """The fault striking `chat`, the latency drawn for it, the reply and the answer's number."""
        with self._lock:
            self._models.setdefault(chat.model)
            elapsed = time.monotonic() - self._started_at
            fault, latency = self._schedule.choose(
                chat.model, stream=chat.stream, prefill=chat.ends_with_assistant, elapsed=elapsed
            )
            reply = self._replies.get(chat.model, f"Hello from {chat.model}.")
            if chat.prefill and isinstance(reply, str):
                known = (text for text in self._replies.values() if isinstance(text, str))
                reply = continuation(chat.prefill, reply, known)
            return fault, latency, reply, next(self._ids)

    async def _misbehave(
        self, request: web.Request, wire: Wire, answer: Answer, fault: Fault | None, latency: float
    ) -> web.StreamResponse | None:
        """What `fault` does before (or instead of) the answer; None: the answer follows."""
        stream = answer.chat.stream
        match fault:
            case Reset():
                return _reset(request)
            case Hang():
                assert self._stopping is not None
                await self._stopping.wait()
                return _abort(request)
            case Delay(seconds=seconds):
                if await self._pause(seconds):
                    return _abort(request)
            case SlowFirstToken(seconds=seconds) if not stream:
                if await self._pause(seconds):
                    return _abort(request)
            case Latency():
                if await self._pause(latency):
                    return _abort(request)
            case Html():
                return web.Response(status=200, text=_HTML_PAGE, content_type="text/html")
            case InvalidJson():
                text = json.dumps(wire.body(answer))
                return web.Response(status=200, text=text[: len(text) // 2], content_type="application/json")
            case GzipBomb(size=size):
                return await self._gzip_bomb(request, wire, answer, size)
            case Endless(every=every) if not stream:
                return await self._endless_body(request, every)
        return None

    async def _stream(
        self, request: web.Request, wire: Wire, answer: Answer, fault: Fault | None
    ) -> web.StreamResponse:
        stream = wire.stream(answer)
        events = stream.events
        response = web.StreamResponse(
            status=200, headers={"Content-Type": wire.stream_content_type, "Cache-Control": "no-cache"}
        )
        response.headers.update(wire.headers(answer))
        await response.prepare(request)
        if isinstance(fault, Endless):
            return await self._endless_stream(request, response, stream, fault.every)
        strike = _strike_index(fault, stream)
        if isinstance(fault, SlowFirstToken) and await self._pause(fault.seconds):
            return _abort(request, response)
        for index in range(len(events) + 1):
            if index == strike:
                ended = await self._strike(request, response, wire, answer, fault)
                if ended is not None:
                    return ended
            if index == len(events):
                break
            await response.write(events[index])
        if not isinstance(fault, NoDone):
            await response.write(stream.terminator)
        await response.write_eof()
        return response

    async def _strike(
        self,
        request: web.Request,
        response: web.StreamResponse,
        wire: Wire,
        answer: Answer,
        fault: Fault | None,
    ) -> web.StreamResponse | None:
        """A mid-stream fault strikes; the response when it ends the stream, None when events go on."""
        match fault:
            case Cut():
                # Close (FIN after what was sent), not reset: the client must see the events.
                assert request.transport is not None
                request.transport.close()
                return response
            case NoFinish():
                await response.write_eof()  # a proper end, of an answer that never finished
                return response
            case Stall(seconds=seconds):
                if await self._pause(seconds):
                    return _abort(request, response)
            case Malformed():
                await response.write(wire.malformed(answer))
            case InStreamError():
                await response.write(wire.stream_error(fault, answer))
                await response.write_eof()
                return response
        return None

    async def _gzip_bomb(
        self, request: web.Request, wire: Wire, answer: Answer, size: int
    ) -> web.StreamResponse:
        if answer.chat.stream:
            content, content_type = b"".join([*wire.stream(answer).events]), wire.stream_content_type
        else:
            content, content_type = json.dumps(wire.body(answer)).encode(), "application/json"
        response = web.StreamResponse(
            status=200, headers={"Content-Type": content_type, "Content-Encoding": "gzip"}
        )
        await response.prepare(request)
        try:
            for start in range(0, len(bomb := _gzip_of_blanks(size, content)), _WRITE):
                await response.write(bomb[start : start + _WRITE])
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading, as it should
        return response

    async def _endless_body(self, request: web.Request, every: float) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"id": "endless", "choices": [{"message": {"content": "')
        piece = b"x" * _WRITE
        try:
            while not await self._pause(every):
                await response.write(piece)
        except ConnectionError:
            pass  # the client stopped reading, as it should
        return _abort(request, response)

    async def _endless_stream(
        self, request: web.Request, response: web.StreamResponse, stream: Stream, every: float
    ) -> web.StreamResponse:
        # The answer has two equal content pieces, so one event repeats: it is sent forever.
        events = stream.events
        again = next(index for index, event in enumerate(events) if events.count(event) > 1)
        try:
            for event in events[:again]:
                await response.write(event)
            while not await self._pause(every):
                await response.write(events[again])
        except ConnectionError:
            pass  # the client stopped reading, as it should
        return _abort(request, response)


_WRITE = 64 * 1024


@functools.lru_cache(maxsize=4)
def _gzip_of_blanks(size: int, content: bytes) -> bytes:
    """gzip of `size` blanks then `content`: whitespace before JSON (or SSE lines) leaves it valid."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * (1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts += [compressor.compress(b" " * (size % len(block)) + b"\n" + content), compressor.flush()]
    return b"".join(parts)


def client_url(root: str, wire: str) -> str:
    """The base URL a client of `wire` takes for the fake upstream at `root` (the root itself for a
    wire it does not speak)."""
    paths = {known.name: known.client_path for known in _WIRES}
    return root + paths.get(wire, "")


def _answer(chat: Chat, reply: str | _ToolReply, number: int, fault: Fault | None, started: float) -> Answer:
    """The reply to `chat` as `fault` shapes it (half of it, none of it, a guardrail's refusal)."""
    tool = reply.name if isinstance(reply, _ToolReply) else None
    pieces = split_words(reply.arguments if isinstance(reply, _ToolReply) else reply)
    finish: Finish | None = "stop" if tool is None else "tool_calls"
    match fault:
        case Truncated():
            pieces, finish = pieces[: len(pieces) // 2], "length"
        case NoFinish():
            pieces, finish = pieces[: len(pieces) // 2], None
        case Huge(size=size):
            pieces = [*(["x" * _WRITE] * (size // _WRITE)), "x" * (size % _WRITE)]
        case Endless(chunk=chunk):
            pieces = ["x" * chunk] * 2
        case ContentFilter():
            tool, pieces, finish = None, split_words(GUARDRAIL_MESSAGE), "content_filter"
    return Answer(
        chat=chat,
        number=number,
        pieces=tuple(pieces),
        finish=finish,
        tool=tool,
        empty=isinstance(fault, EmptyChoices),
        created=int(time.time()),
        started=started,
    )


def _strike_index(fault: Fault | None, stream: Stream) -> int:
    """Where, counted in events sent, a mid-stream fault strikes (-1: nowhere); never past the last
    event, and a cut always comes before the event that finishes the answer."""
    if isinstance(fault, Cut):
        return min(fault.after_chunks, stream.finish)
    if isinstance(fault, NoFinish):
        return stream.finish
    if isinstance(fault, Stall | Malformed | InStreamError):
        return min(fault.after_chunks, len(stream.events))
    return -1


def _reset(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, as a crashed or firewalled peer does.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response()  # never sent: aiohttp finds the transport closed and moves on


def _abort(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.Response()


_HTML_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def run_forever(upstream: FakeUpstream, out: TextIO = sys.stdout) -> None:
    """Serve until Ctrl-C, printing the base URL and the faults; stops the upstream on exit."""
    # Everything inside the try: Ctrl-C may land while starting or printing, too.
    try:
        if not upstream.running:
            upstream.start()
        print(f"fake upstream listening on {upstream.base_url}", file=out, flush=True)
        for rule in upstream.faults:
            print(f"  fault: {rule.model} -> {rule.fault.name}{_describe_scope(rule)}", file=out, flush=True)
        others = "Azure OpenAI, Anthropic, Bedrock and Google"
        print(f"  {others} at {upstream.azure_endpoint}", file=out, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Iterable[FaultRule | str] = (),
    *,
    seed: int | None = 0,
    out: TextIO = sys.stdout,
) -> None:
    """Blocking entry point of `router fake-upstream`: faults as rules or `parse_fault_spec` text."""
    rules = [parse_fault_spec(f) if isinstance(f, str) else f for f in faults]
    run_forever(FakeUpstream(host, port, seed=seed, faults=rules), out)


def _describe_scope(rule: FaultRule) -> str:
    parts = []
    if rule.after:
        parts.append(f"after {rule.after}")
    if rule.times is not None:
        parts.append(f"{rule.times} time(s)")
    if rule.start is not None or rule.end is not None:
        parts.append(f"from {rule.start or 0:g}s" + (f" to {rule.end:g}s" if rule.end is not None else ""))
    if rule.probability < 1.0:
        parts.append(f"p={rule.probability:g}")
    return f" ({', '.join(parts)})" if parts else ""
