"""The AWS Bedrock Converse wire (`converse`, `converse_stream`), through boto3.

boto3 is synchronous: every call runs on a bounded thread pool owned by the provider, and a
stream is pulled one event per pool job, so the event loop never blocks and a cancelled
stream gives its thread and connection back (its socket is shut down, which wakes a blocked
read). The SDK never retries (`total_max_attempts=1`): retries and failover are the engine's.
Requests are translated from OpenAI's chat shape; answers are parsed tolerantly, so garbage
becomes a typed `server_error` (a bad stream event, a warning) rather than an SDK exception.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.eventstream  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import botocore.parsers  # type: ignore[import-untyped]
import urllib3.exceptions

from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers._http import redact, retry_after
from router.providers._translate import (
    Block,
    Text,
    ToolChoice,
    ToolResult,
    ToolSpec,
    ToolUse,
    parse_data_url,
    read_conversation,
    read_stop,
    read_tool_choice,
    read_tools,
)
from router.providers.base import Call, Chunk, Reply
from router.providers.kinds import bedrock_kind
from router.providers.transport import ResponseTooLarge
from router.results import ToolCall, Usage

__all__ = ["BedrockProvider"]

logger = logging.getLogger("router")

_T = TypeVar("_T")

_DEFAULT_POOL = 16
# Generous: the engine enforces each call's deadline, and a cancelled stream is woken at once.
# This bounds how long a thread abandoned by a cancelled call that has no response yet (a hung
# upstream) stays blocked, and so how long such a hang can delay interpreter exit, which joins
# pool threads.
_READ_TIMEOUT = 300.0

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_MALFORMED_STOPS = frozenset({"malformed_model_output", "malformed_tool_use"})
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_END = object()
_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> Any:
    """One boto3 session for every provider: it caches the service models (~40 ms per client
    otherwise). Credentials are given per client, so providers never share them."""
    return boto3.session.Session()


class BedrockProvider:
    """One Bedrock region (or `base_url` endpoint) with one set of AWS credentials.

    `key` is accepted for a uniform constructor; Bedrock takes AWS credentials from the spec,
    or from the standard chain (environment, profile, instance role) when the spec has none.
    """

    def __init__(self, name: str, spec: ProviderSpec, key: str | None = None) -> None:
        self.name = name
        credentials = {
            field: secret.get_secret_value()
            for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
            if (secret := getattr(spec, field)) is not None
        }
        self._secrets = tuple(credentials.values()) + ((key,) if key else ())
        size = spec.limits.max_concurrency or _DEFAULT_POOL
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"bedrock-{name}")
        self._streams: set[_Upstream] = set()

        def client(service: str, connections: int) -> Any:
            config = botocore.config.Config(
                retries={"total_max_attempts": 1},
                connect_timeout=spec.connect_timeout,
                read_timeout=_READ_TIMEOUT,
                max_pool_connections=connections,
            )
            with _SESSION_LOCK:  # a boto3 session is not thread-safe; its clients are
                return _session().client(
                    service, region_name=spec.region, endpoint_url=spec.base_url, config=config, **credentials
                )

        # One connection per pool thread, so no call waits for, or discards, a connection.
        self._runtime = client("bedrock-runtime", size)
        self._control = client("bedrock", 2)
        self._max_bytes = spec.max_response_bytes
        for made in (self._runtime, self._control):
            _bound_bodies(made, self._max_bytes)

    async def _run(self, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function)

    async def complete(self, call: Call) -> Reply:
        request = self._request(call)
        try:
            response = await self._run(functools.partial(self._runtime.converse, **request))
        except _SDK_ERRORS as error:
            raise self._classify(error) from None
        except ResponseTooLarge as error:
            raise ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name) from None
        return self._parse_reply(response)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        request = self._request(call)
        upstream = _Upstream()
        self._streams.add(upstream)
        state = _StreamState(self.name)
        try:
            try:
                events = await self._run(functools.partial(upstream.open, self._runtime, request))
            except _SDK_ERRORS as error:
                raise self._classify(error) from None
            except _Abandoned:
                raise ProviderError(
                    ErrorKind.CONNECTION, "the provider was closed", provider=self.name
                ) from None
            while True:
                try:
                    event = await self._run(functools.partial(next, events, _END))
                except _SDK_ERRORS as error:
                    if not state.stopped:
                        raise self._classify(error) from None
                    # The answer was whole at messageStop; only the usage that follows is lost.
                    logger.debug("bedrock %s: stream failed after messageStop", self.name, exc_info=True)
                    break
                if event is _END:
                    upstream.ended = True
                    break
                chunk = state.feed(event)
                if state.received > self._max_bytes:
                    raise ProviderError(
                        ErrorKind.SERVER_ERROR, str(ResponseTooLarge(self._max_bytes)), provider=self.name
                    )
                if chunk is not None:
                    yield chunk
            final = state.final()
            if final is not None:
                yield final
        finally:
            self._streams.discard(upstream)
            upstream.close()

    async def list_models(self) -> list[str]:
        try:
            response = await self._run(self._control.list_foundation_models)
        except _SDK_ERRORS as error:
            raise self._classify(error) from None
        try:
            return [str(summary["modelId"]) for summary in response["modelSummaries"]]
        except (KeyError, TypeError):
            raise ProviderError(
                ErrorKind.SERVER_ERROR, "malformed ListFoundationModels response", provider=self.name
            ) from None

    async def aclose(self) -> None:
        for upstream in list(self._streams):
            upstream.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._runtime.close()
        self._control.close()

    # -- translation -----------------------------------------------------------------------

    def _request(self, call: Call) -> dict[str, Any]:
        try:
            return converse_request(call)
        except ValueError as error:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(error), provider=self.name) from None

    def _parse_reply(self, response: Any) -> Reply:
        try:
            blocks = response["output"]["message"]["content"]
            texts: list[str] = []
            tool_calls: list[ToolCall] = []
            for block in blocks:
                if not isinstance(block, Mapping):
                    raise TypeError("a content block is not an object")
                if "text" in block:
                    if not isinstance(block["text"], str):
                        raise TypeError("text is not a string")
                    texts.append(block["text"])
                elif "toolUse" in block:
                    tool = block["toolUse"]
                    tool_calls.append(
                        ToolCall(str(tool["toolUseId"]), str(tool["name"]), json.dumps(tool.get("input", {})))
                    )
            stop = response.get("stopReason")
            usage = _usage(response.get("usage"))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ProviderError(
                ErrorKind.SERVER_ERROR, "malformed response body (not a Converse answer)", provider=self.name
            ) from None
        finish = _finish_reason(stop, self.name)
        if finish == "content_filter":
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                f"the answer was withheld by the provider ({stop})",
                provider=self.name,
            )
        return Reply("".join(texts), usage, finish, tuple(tool_calls))

    # -- errors ----------------------------------------------------------------------------

    def _classify(self, error: BaseException) -> ProviderError:
        if isinstance(error, botocore.exceptions.ClientError):
            return self._client_error(error)
        kind, message = _transport_kind(error)
        return ProviderError(kind, message, provider=self.name)

    def _client_error(self, error: Any) -> ProviderError:
        response = error.response if isinstance(error.response, Mapping) else {}
        details = response.get("Error") or {}
        metadata = response.get("ResponseMetadata") or {}
        code = str(details.get("Code") or "")
        code = code[:1].upper() + code[1:]  # in-stream exceptions are named in lowerCamelCase
        status = metadata.get("HTTPStatusCode")
        in_stream = isinstance(error, botocore.exceptions.EventStreamError)
        if in_stream or not isinstance(status, int):
            status = None  # an in-stream exception arrives on a 200; botocore's status is made up
        message = redact(str(details.get("Message") or ""), self._secrets)
        kind = bedrock_kind(code, status, message.lower())
        if kind is ErrorKind.AUTH:
            # AWS echoes ARNs and key ids in these messages.
            detail = f"{code or 'HTTP ' + str(status)}: credentials rejected, or no access to this model"
        elif code and not code.isdigit():
            detail = f"{code}: {message}" if message else code
        else:
            detail = f"HTTP {status}"  # no AWS error type: the body is a proxy's page, not worth quoting
        headers = metadata.get("HTTPHeaders") or {}
        return ProviderError(
            kind,
            detail,
            provider=self.name,
            status=status,
            retry_after=retry_after(headers) if isinstance(headers, Mapping) else None,
        )


class _Upstream:
    """One ConverseStream response, opened on the pool and closable from the event loop at any time.

    Closing shuts the socket down first, which wakes a pool thread blocked reading it; a
    response that arrives after the close is released by the thread that receives it.
    """

    __slots__ = ("_events", "_lock", "closed", "ended")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: Any = None
        self.closed = False
        self.ended = False  # read to the end: the connection went back to botocore's pool

    def open(self, client: Any, request: dict[str, Any]) -> Iterator[Any]:
        response = client.converse_stream(**request)
        events = response["stream"]
        with self._lock:
            self._events = events
            abandoned = self.closed
        if abandoned:
            _release(events)
            raise _Abandoned
        return iter(events)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            events, self._events = self._events, None
        if events is not None and not self.ended:
            _release(events)


def _bound_bodies(client: Any, limit: int) -> None:
    """Read each answer of `client` (but event streams, bounded event by event) up to `limit` bytes.

    botocore reads a whole body before parsing it, however large; this reads it instead, from the
    same connection pool, and stops at the bound (`ResponseTooLarge`). Bodies are not decompressed:
    botocore reads them as sent.
    """
    session = client._endpoint.http_session

    def send(request: Any, **_: Any) -> Any:
        if request.stream_output:
            return None  # an event stream: botocore sends it, `BedrockProvider.stream` bounds it
        request.stream_output = True  # so that the body is left for us to read
        response = session.send(request)
        body = bytearray()
        for piece in response.raw.stream(64 * 1024, decode_content=False):
            body += piece
            if len(body) > limit:
                response.raw.close()  # the rest is not read: the connection cannot be reused
                raise ResponseTooLarge(limit)
        response._content = bytes(body)
        return response

    client.meta.events.register_first(f"before-send.{client.meta.service_model.service_id.hyphenize()}", send)


class _Abandoned(Exception):
    """The stream was closed before its response arrived; nobody awaits this."""


def _release(events: Any) -> None:
    """Wake a pool thread blocked reading this stream, then close it.

    Shutting the socket down comes first: closing alone would wait for the reader's buffer
    lock, on the event loop, for as long as the upstream stays silent.
    """
    raw = getattr(events, "_raw_stream", None)  # botocore's EventStream over a urllib3 response
    shutdown = getattr(raw, "shutdown", None)  # urllib3 >= 2.3
    if shutdown is None:
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        shutdown = sock and functools.partial(sock.shutdown, socket.SHUT_RD)
    try:
        if shutdown:
            shutdown()
    except (OSError, ValueError, RuntimeError):
        pass  # already closed, or already back in botocore's pool
    try:
        events.close()
    except Exception:  # the woken reader may be tearing the same response down
        logger.debug("closing a bedrock event stream failed", exc_info=True)


class _StreamState:
    """ConverseStream events -> Chunks; the finish is held back until the usage that follows it."""

    __slots__ = ("_done", "_finish", "_provider", "_tools", "_usage", "received", "stopped")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._tools: dict[int, tuple[str, str, list[str]]] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._done = False
        self.stopped = False  # messageStop seen: the answer is whole
        self.received = 0  # bytes of text and tool input so far, which the bound is checked against

    def feed(self, event: Any) -> Chunk | None:
        try:
            (name, body), *_ = event.items()
            if name == "contentBlockDelta":
                return self._delta(body["contentBlockIndex"], body["delta"])
            if name == "contentBlockStart":
                tool = body["start"].get("toolUse")
                if tool is not None:
                    self._tools[int(body["contentBlockIndex"])] = (
                        str(tool["toolUseId"]),
                        str(tool["name"]),
                        [],
                    )
            elif name == "messageStop":
                self._finish = _finish_reason(body["stopReason"], self._provider)
                self.stopped = True
            elif name == "metadata":
                self._usage = _usage(body.get("usage"))
                return self.final()
        except (KeyError, TypeError, AttributeError, ValueError):
            return Chunk(warning=f"skipped a malformed ConverseStream event ({_event_name(event)})")
        return None  # messageStart, contentBlockStop and events added later carry nothing for us

    def _delta(self, index: Any, delta: Any) -> Chunk | None:
        if "text" in delta:
            if not isinstance(delta["text"], str):
                raise TypeError("text is not a string")
            self.received += len(delta["text"])
            return Chunk(text=delta["text"]) if delta["text"] else None
        if "toolUse" in delta:
            piece = delta["toolUse"]["input"]
            if not isinstance(piece, str):
                raise TypeError("tool input is not a string")
            self.received += len(piece)
            self._tools[int(index)][2].append(piece)
        return None  # reasoning, citations: not part of the answer's text

    def final(self) -> Chunk | None:
        """The finish chunk, once: after messageStop, at the metadata event or the stream's end."""
        if not self.stopped or self._done:
            return None
        self._done = True
        tool_calls = tuple(
            ToolCall(tool_id, name, "".join(pieces) or "{}")
            for _, (tool_id, name, pieces) in sorted(self._tools.items())
        )
        return Chunk(finish_reason=self._finish, usage=self._usage, tool_calls=tool_calls)


def _event_name(event: Any) -> str:
    try:
        return str(next(iter(event)))
    except (TypeError, StopIteration):
        return type(event).__name__


def _finish_reason(stop: Any, provider: str) -> str | None:
    if stop is None:
        return None
    if stop in _MALFORMED_STOPS:
        raise ProviderError(
            ErrorKind.SERVER_ERROR, f"the model's output was malformed ({stop})", provider=provider
        )
    return _FINISH_REASONS.get(str(stop), str(stop))


def _usage(data: Any) -> Usage:
    if not isinstance(data, Mapping):
        return Usage()
    # inputTokens leaves out prompt-cache reads and writes, which are input all the same.
    cached = int(data.get("cacheReadInputTokens") or 0) + int(data.get("cacheWriteInputTokens") or 0)
    return Usage(int(data.get("inputTokens") or 0) + cached, int(data.get("outputTokens") or 0))


def _transport_kind(error: BaseException) -> tuple[ErrorKind, str]:
    name = type(error).__name__
    exceptions = botocore.exceptions
    if isinstance(
        error, exceptions.ReadTimeoutError | exceptions.ConnectTimeoutError | urllib3.exceptions.TimeoutError
    ):
        return ErrorKind.TIMEOUT, name
    if isinstance(
        error,
        exceptions.ConnectionError | exceptions.HTTPClientError | urllib3.exceptions.HTTPError | OSError,
    ):
        return ErrorKind.CONNECTION, name
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return ErrorKind.AUTH, "no usable AWS credentials"
    if isinstance(error, exceptions.ParamValidationError):
        return ErrorKind.BAD_REQUEST, "the request does not fit the Converse API"
    if isinstance(error, botocore.eventstream.ParserError):
        return ErrorKind.SERVER_ERROR, f"malformed event stream ({name})"
    return ErrorKind.SERVER_ERROR, f"malformed response ({name})"


_SDK_ERRORS = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    botocore.eventstream.ParserError,
    botocore.parsers.ResponseParserError,
    urllib3.exceptions.HTTPError,
    OSError,
)


# -- OpenAI chat shape -> Converse ---------------------------------------------------------


def converse_request(call: Call) -> dict[str, Any]:
    """The keyword arguments of `converse`/`converse_stream` for an OpenAI-shaped call.

    Raises ValueError for what Converse cannot express. Options it has no room for
    (`response_format`, `seed`, penalties, ...) are dropped.
    """
    conversation = read_conversation(call.messages)
    request: dict[str, Any] = {
        "modelId": call.model,
        "messages": [
            {"role": turn.role, "content": [_block(block) for block in turn.blocks]}
            for turn in conversation.turns
        ],
    }
    if conversation.system:
        request["system"] = [{"text": text} for text in conversation.system]
    options = call.options
    inference = _inference_config(call)
    if inference:
        request["inferenceConfig"] = inference
    uses_tools = any(
        isinstance(block, ToolUse | ToolResult) for turn in conversation.turns for block in turn.blocks
    )
    tool_config = _tool_config(
        read_tools(options.get("tools")), read_tool_choice(options.get("tool_choice")), uses_tools
    )
    if tool_config:
        request["toolConfig"] = tool_config
    extra = options.get("extra_body")
    if extra:
        # The caller's pass-through: fields of the model's own request body.
        request["additionalModelRequestFields"] = dict(extra)
    return request


def _inference_config(call: Call) -> dict[str, Any]:
    """Converse's `inferenceConfig`: the sampling options it has a field for (empty: none set)."""
    options = call.options
    inference: dict[str, Any] = {}
    if call.max_tokens is not None:
        inference["maxTokens"] = call.max_tokens
    if call.temperature is not None:
        inference["temperature"] = call.temperature
    if options.get("top_p") is not None:
        inference["topP"] = options["top_p"]
    stop = read_stop(options.get("stop"))
    if stop:
        inference["stopSequences"] = stop
    return inference


def _block(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"text": block.text}
    if isinstance(block, ToolUse):
        return {"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}}
    if isinstance(block, ToolResult):
        return {"toolResult": {"toolUseId": block.tool_use_id, "content": [{"text": block.content}]}}
    return _image(block.url)


def _image(url: str) -> dict[str, Any]:
    parsed = parse_data_url(url)
    if parsed is None:
        raise ValueError("Bedrock takes images inline only (data:image/...;base64 URLs)")
    media_type, data = parsed
    image_format = _IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise ValueError(f"Bedrock takes png, jpeg, gif and webp images, not {media_type}")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError("an image data URL is not valid base64") from None
    return {"image": {"format": image_format, "source": {"bytes": raw}}}


def _tool_config(tools: list[ToolSpec], choice: ToolChoice | None, uses_tools: bool) -> dict[str, Any] | None:
    if not tools:
        return None
    if choice is not None and choice.mode == "none":
        if not uses_tools:
            return None  # Converse has no "none": a model that is shown no tools calls none
        # A conversation holding tool blocks must keep its tools declared: the model decides.
        choice = None
    specs = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
        if tool.description:
            spec["description"] = tool.description
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice is not None:
        config["toolChoice"] = {"tool": {"name": choice.name}} if choice.mode == "tool" else {choice.mode: {}}
    return config
