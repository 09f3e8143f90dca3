"""A loopback OpenAI chat-completions server with fault injection, for testing code that calls LLMs.

`FakeUpstream` is a real HTTP server (aiohttp) on its own thread and event loop, so it serves
sync code, any test's event loop and `complete_sync` alike::

    with FakeUpstream() as up:
        up.add_fault("gpt-4o", Fault.rate_limited(retry_after=1), times=1)
        client = openai.AsyncOpenAI(base_url=up.base_url, api_key="test", max_retries=0)
        ...
        assert [r.fault for r in up.log] == ["http_429", "ok"]

It answers `POST /v1/chat/completions` (JSON, or SSE with `stream: true`) and `GET /v1/models`.
Replies are deterministic (`"Hello from <model>."` unless `set_reply` says otherwise), and so
is every random choice (error rates, latency), from the `seed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TextIO

from aiohttp import web

from router.testing.faults import (
    Cut,
    Delay,
    EmptyChoices,
    Fault,
    FaultRule,
    Hang,
    Html,
    HttpError,
    InvalidJson,
    Latency,
    Malformed,
    NoDone,
    RejectPrefill,
    Reset,
    SlowFirstToken,
    Stall,
    Truncated,
    parse_fault_spec,
)

__all__ = ["FakeUpstream", "RequestRecord", "run_forever", "serve"]

_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"
# Handlers still running when the server stops get this long before they are cancelled;
# ours end as soon as the stop is signalled, so this only bounds a misbehaving one.
_SHUTDOWN_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake upstream received, as the attempt log keeps it.

    `at` is seconds since `start()` (monotonic); `fault` is the injected fault's name or `"ok"`;
    `status` is the HTTP status sent, None when no response head was sent (reset, hang).
    """

    at: float
    method: str
    path: str
    model: str
    stream: bool
    fault: str
    status: int | None


@dataclass(slots=True)
class _RuleState:
    rule: FaultRule
    seen: int = 0
    fired: int = 0


@dataclass(frozen=True, slots=True)
class _Chat:
    """What a chat-completions request asked for, as far as the fake needs to know."""

    model: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    ends_with_assistant: bool


class FakeUpstream:
    """An OpenAI-compatible upstream on loopback, with faults injected per model.

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
        self._rng = random.Random(seed)
        self._rules = [_RuleState(rule) for rule in faults]
        self._replies: dict[str, str] = {}
        self._models: dict[str, None] = dict.fromkeys(models)
        self._models.update((state.rule.model, None) for state in self._rules if state.rule.model != "*")
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

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
            self._rules.append(_RuleState(rule))
            if model != "*":
                self._models.setdefault(model)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def faults(self) -> list[FaultRule]:
        with self._lock:
            return [state.rule for state in self._rules]

    def set_reply(self, model: str, text: str) -> None:
        """Answer `model` with `text` (streams split it into a chunk per word)."""
        with self._lock:
            self._replies[model] = text
            self._models.setdefault(model)

    # --- attempt log -------------------------------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, model: str | None = None) -> int:
        """Chat-completion requests received, for `model` or for all models."""
        with self._lock:
            return sum(
                1
                for record in self._log
                if record.path == _CHAT_PATH and (model is None or record.model == model)
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
        app.router.add_post(_CHAT_PATH, self._chat)
        app.router.add_get(_MODELS_PATH, self._list_models)
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

    def _record(self, request: web.Request, model: str, stream: bool, fault: str, status: int | None) -> None:
        record = RequestRecord(
            at=time.monotonic() - self._started_at,
            method=request.method,
            path=request.path,
            model=model,
            stream=stream,
            fault=fault,
            status=status,
        )
        with self._lock:
            self._log.append(record)

    async def _list_models(self, request: web.Request) -> web.Response:
        with self._lock:
            models = list(self._models)
        self._record(request, "", False, "ok", 200)
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake-upstream"} for model in models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            chat = _read_chat(await request.json())
        except (ValueError, TypeError, KeyError) as exc:
            self._record(request, "", False, "invalid_request", 400)
            return _error_response(HttpError(400, f"Invalid request: {exc}", "invalid_request_error"))

        with self._lock:
            self._models.setdefault(chat.model)
            fault = self._choose_fault(chat)
            reply = self._replies.get(chat.model, f"Hello from {chat.model}.")
            request_id = next(self._ids)
            latency = 0.0
            if isinstance(fault, Latency):
                latency = max(0.0, self._rng.uniform(fault.mean - fault.jitter, fault.mean + fault.jitter))
        status = _status_for(fault)
        self._record(request, chat.model, chat.stream, fault.name if fault else "ok", status)

        answer = _Answer(chat, reply, f"chatcmpl-fake{request_id:06d}")
        match fault:
            case HttpError() | RejectPrefill():
                return _error_response(fault if isinstance(fault, HttpError) else _PREFILL_ERROR)
            case Reset():
                return _reset(request)
            case Hang():
                assert self._stopping is not None
                await self._stopping.wait()
                return _abort(request)
            case Delay(seconds=seconds):
                if await self._pause(seconds):
                    return _abort(request)
            case SlowFirstToken(seconds=seconds) if not chat.stream:
                if await self._pause(seconds):
                    return _abort(request)
            case Latency():
                if await self._pause(latency):
                    return _abort(request)
            case Html():
                return web.Response(status=200, text=_HTML_PAGE, content_type="text/html")
            case InvalidJson():
                body = json.dumps(answer.completion())
                return web.Response(status=200, text=body[: len(body) // 2], content_type="application/json")
        if chat.stream:
            return await self._stream(request, answer, fault)
        return web.json_response(answer.completion(fault), headers={"x-request-id": answer.id})

    async def _stream(self, request: web.Request, answer: _Answer, fault: Fault | None) -> web.StreamResponse:
        events = answer.chunks(fault)
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.headers["x-request-id"] = answer.id
        await response.prepare(request)
        # Where, counted in events sent, a mid-stream fault strikes; never past the last event,
        # and a cut always comes before the finish_reason chunk.
        strike = -1
        if isinstance(fault, Cut):
            strike = min(fault.after_chunks, answer.finish_index(events))
        elif isinstance(fault, Stall | Malformed):
            strike = min(fault.after_chunks, len(events))
        if isinstance(fault, SlowFirstToken) and await self._pause(fault.seconds):
            return _abort(request, response)
        for index in range(len(events) + 1):
            if index == strike:
                match fault:
                    case Cut():
                        # Close (FIN after what was sent), not reset: the client must see the chunks.
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    case Stall(seconds=seconds):
                        if await self._pause(seconds):
                            return _abort(request, response)
                    case Malformed():
                        await response.write(
                            b'data: {"id": "' + answer.id.encode() + b'", "choices": [{"delta\n\n'
                        )
            if index == len(events):
                break
            await response.write(b"data: " + json.dumps(events[index]).encode() + b"\n\n")
        if not isinstance(fault, NoDone):
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _choose_fault(self, chat: _Chat) -> Fault | None:
        """The fault striking this request, if any; updates the rules' counters. Holds the lock."""
        elapsed = time.monotonic() - self._started_at
        chosen: Fault | None = None
        for state in self._rules:
            rule = state.rule
            if not rule.matches_model(chat.model) or not _applies(rule.fault, chat):
                continue
            state.seen += 1
            if chosen is not None or state.seen <= rule.after:
                continue
            if rule.times is not None and state.fired >= rule.times:
                continue
            if not rule.in_window(elapsed):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            state.fired += 1
            chosen = rule.fault
        return chosen


class _Answer:
    """The deterministic reply to one chat request, as a JSON body or as stream chunks."""

    def __init__(self, chat: _Chat, reply: str, completion_id: str) -> None:
        self.chat = chat
        self.reply = reply
        self.id = completion_id
        self.created = int(time.time())

    def usage(self, text: str) -> dict[str, int]:
        completion_tokens = _estimate_tokens(text)
        return {
            "prompt_tokens": self.chat.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.chat.prompt_tokens + completion_tokens,
        }

    def _text_and_finish(self, fault: Fault | None) -> tuple[str, str]:
        if isinstance(fault, Truncated):
            pieces = _split_words(self.reply)
            return "".join(pieces[: len(pieces) // 2]), "length"
        return self.reply, "stop"

    def completion(self, fault: Fault | None = None) -> dict[str, Any]:
        text, finish_reason = self._text_and_finish(fault)
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.chat.model,
            "choices": [] if isinstance(fault, EmptyChoices) else choices,
            "usage": self.usage(text),
            "system_fingerprint": "fp_fake",
        }

    def chunks(self, fault: Fault | None = None) -> list[dict[str, Any]]:
        """The `data:` events of a stream, without `[DONE]`."""
        text, finish_reason = self._text_and_finish(fault)
        deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
        deltas += [({"content": piece}, None) for piece in _split_words(text)]
        deltas.append(({}, finish_reason))
        if isinstance(fault, EmptyChoices):
            deltas = []
        events = [
            self._chunk([{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]) for d, f in deltas
        ]
        if self.chat.include_usage:
            for event in events:
                event["usage"] = None
            events.append(self._chunk([]) | {"usage": self.usage(text)})
        return events

    def finish_index(self, events: list[dict[str, Any]]) -> int:
        """Index of the event carrying finish_reason (or of the first event after the content)."""
        for index, event in enumerate(events):
            if event["choices"] and event["choices"][0]["finish_reason"] is not None:
                return index
        return len(events)

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.chat.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }


def _read_chat(body: Any) -> _Chat:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("'model' must be a non-empty string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a non-empty list of objects")
    stream_options = body.get("stream_options") or {}
    return _Chat(
        model=model,
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(stream_options, dict) and bool(stream_options.get("include_usage")),
        prompt_tokens=_estimate_tokens("".join(_message_text(m) for m in messages)),
        ends_with_assistant=messages[-1].get("role") == "assistant",
    )


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


def _split_words(text: str) -> list[str]:
    """`text` in word-sized pieces that join back to it exactly."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])


def _applies(fault: Fault, chat: _Chat) -> bool:
    if fault.stream_only and not chat.stream:
        return False
    return chat.ends_with_assistant if isinstance(fault, RejectPrefill) else True


def _status_for(fault: Fault | None) -> int | None:
    match fault:
        case HttpError(status=status):
            return status
        case RejectPrefill():
            return _PREFILL_ERROR.status
        case Reset() | Hang():
            return None
    return 200


def _error_response(error: HttpError) -> web.Response:
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.type,
        "param": error.param,
        "code": error.code,
    }
    if error.inner_error:
        body["innererror"] = dict(error.inner_error)
    return web.json_response({"error": body}, status=error.status, headers=dict(error.headers))


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


_PREFILL_ERROR = HttpError(
    status=400,
    message=(
        "This model does not support assistant message prefill. "
        "The conversation must end with a user message."
    ),
    type="invalid_request_error",
    param="messages",
    label="reject_prefill",
)

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
