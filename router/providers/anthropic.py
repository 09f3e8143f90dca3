"""The Anthropic Messages wire (`type: anthropic`), through the official SDK with its retries off.

The SDK builds and authenticates the requests and raises typed HTTP errors; bodies and SSE
events are parsed here, so that garbage becomes a typed `server_error` (a malformed stream
event, a warning) rather than an exception from inside the SDK, and so that an in-band
`event: error` on a 200 stream is classified by its error type.

Translation from the OpenAI shape (see `router.providers._translate`):

- system (and developer) messages -> the top-level `system`, joined by blank lines;
- assistant `tool_calls` -> `tool_use` blocks; `tool` messages -> `tool_result` blocks in a
  user turn; same-role neighbours merged, as the wire demands strict alternation;
- a trailing assistant message is a prefill: the reply's text is the continuation only, and
  the prefill loses its trailing whitespace (the API rejects it);
- `max_tokens` is required on this wire: `DEFAULT_MAX_TOKENS` when the caller gives none;
- `tools`, `tool_choice` ("required" -> any), `parallel_tool_calls=False`, `stop` ->
  `stop_sequences`, `user` -> `metadata.user_id`, and `response_format` of type
  `json_schema` -> `output_config.format`; `json_object` has no equivalent and is dropped;
- `temperature` and `top_p` are sent only to a provider whose headers pin an
  `anthropic-version` older than 2026-10-21: that version, the SDK's default, refuses them
  with a 400 even at their default values. Every other option is OpenAI's and is dropped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers._http import (
    TooManyValues,
    check_json_body,
    check_json_event,
    redact,
    retry_after,
    secrets_of,
    server_sent_events,
)
from router.providers._translate import (
    Block,
    Conversation,
    Image,
    Text,
    ToolResult,
    ToolUse,
    Turn,
    parse_data_url,
    read_conversation,
    read_stop,
    read_tool_choice,
    read_tools,
)
from router.providers.base import Call, Chunk, Reply
from router.providers.kinds import ANTHROPIC_ERROR_TYPES, anthropic_kind, kind_for_request_error
from router.providers.transport import ResponseTooLarge, sdk_http_client
from router.results import ToolCall, Usage

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicProvider"]

DEFAULT_MAX_TOKENS = 4096
"""Output cap sent when the caller sets none: the wire requires one, and every model takes this."""

_SAMPLING_REMOVED = "2026-10-21"  # the first anthropic-version that refuses temperature/top_p
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Decided by the error type alone. overloaded_error (HTTP 529) is the provider's capacity, not
# our quota: another key would not help, another provider would; so server_error, not rate_limited.
_AUTH_DETAIL = {  # fixed texts: bodies of these answers may echo fragments of the key
    401: "credentials rejected",
    402: "billing: the account cannot pay for this request",
    403: "no access to this model or feature",
    404: "not found: an unknown model, or a base_url that is not an Anthropic Messages endpoint",
}


class AnthropicProvider:
    """One client with one key; key pools wrap several (see `router.providers.pool`)."""

    def __init__(self, name: str, spec: ProviderSpec, key: str | None) -> None:
        self.name = name
        self._secrets = secrets_of(spec, key)
        self._connect_timeout = spec.connect_timeout
        pinned = {k.lower(): v for k, v in spec.headers.items()}.get("anthropic-version")
        self._sampling = pinned is not None and pinned < _SAMPLING_REMOVED
        self._client = anthropic.AsyncAnthropic(
            api_key=key,  # None: the SDK looks for ANTHROPIC_API_KEY and its other sources
            base_url=spec.base_url,
            default_headers=spec.headers or None,
            max_retries=0,
            timeout=httpx2.Timeout(60.0, connect=spec.connect_timeout),
            http_client=sdk_http_client(spec.transport, spec.max_response_bytes),
        )
        client = self._client
        self._has_credentials = bool(client.api_key or client.auth_token or client.credentials)

    # -- the Provider protocol -------------------------------------------------------------

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """What the SDK and the HTTP stack raise, as this provider's `ProviderError`s."""
        try:
            yield
        except anthropic.APIError as error:
            raise self._classify(error) from None
        except anthropic.CredentialsError:
            raise self._no_credentials() from None
        except httpx2.TransportError as error:
            raise self._transport_error(error) from None

    async def complete(self, call: Call) -> Reply:
        params = self._params(call)
        with self._sdk_errors():
            raw = await self._client.messages.with_raw_response.create(**params)
            body = await raw.read()
        try:
            await check_json_body(body)  # what parsing it would cost the loop
        except TooManyValues as error:
            raise ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name) from None
        return self._parse_reply(body)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        params = self._params(call)
        params["stream"] = True
        state = _StreamState()
        with self._sdk_errors():
            try:
                async with self._client.messages.with_streaming_response.create(**params) as response:
                    if "text/event-stream" not in response.http_response.headers.get("content-type", ""):
                        raise self._not_a_stream(await response.read())
                    async for event in server_sent_events(response.iter_lines()):
                        chunk = self._on_event(state, event.name, event.data)
                        if chunk is not None:
                            yield chunk
                        if state.stopped:
                            return
                    # The upstream closed without message_stop: whole all the same if it said why it
                    # stopped; if not, the engine sees a stream without a finish and judges it broken.
                    if state.stop_reason is not None:
                        yield state.final()
            except httpx2.TransportError:
                if state.stop_reason is not None:  # lost after the last word: the answer is whole
                    yield state.final()
                    return
                raise

    async def list_models(self) -> list[str]:
        return [model.id for model in await self._listing()]

    async def context_windows(self) -> dict[str, int]:
        """The input tokens each listed model accepts, where the listing says (`max_input_tokens`)."""
        return {
            model.id: window
            for model in await self._listing()
            if isinstance(window := getattr(model, "max_input_tokens", None), int) and window > 0
        }

    async def _listing(self) -> list[Any]:
        if not self._has_credentials:
            raise self._no_credentials()
        try:
            with self._sdk_errors():
                page = await self._client.models.list(limit=1000)
                return [model async for model in page]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ProviderError(
                ErrorKind.SERVER_ERROR,
                "malformed model list (not an Anthropic models page)",
                provider=self.name,
            ) from None

    async def aclose(self) -> None:
        await self._client.close()

    # -- requests --------------------------------------------------------------------------

    def _params(self, call: Call) -> dict[str, Any]:
        if not self._has_credentials:
            raise self._no_credentials()
        try:
            return self._translate(call)
        except ValueError as error:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(error), provider=self.name) from None

    def _translate(self, call: Call) -> dict[str, Any]:
        options = call.options
        conversation = read_conversation(call.messages)
        max_tokens = call.max_tokens if call.max_tokens is not None else options.get("max_completion_tokens")
        params: dict[str, Any] = {
            "model": call.model,
            "messages": _render_turns(conversation),
            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
            "timeout": httpx2.Timeout(call.timeout, connect=min(self._connect_timeout, call.timeout)),
        }
        if conversation.system:
            params["system"] = "\n\n".join(conversation.system)
        tools = read_tools(options.get("tools"))
        if tools:
            params["tools"] = [
                {"name": tool.name, "input_schema": tool.parameters}
                | ({"description": tool.description} if tool.description else {})
                for tool in tools
            ]
            choice = _render_tool_choice(options.get("tool_choice"), options.get("parallel_tool_calls"))
            if choice is not None:
                params["tool_choice"] = choice
        stop = read_stop(options.get("stop"))
        if stop:
            params["stop_sequences"] = stop
        output_format = _render_response_format(options.get("response_format"))
        if output_format is not None:
            params["output_config"] = {"format": output_format}
        user = options.get("user")
        if isinstance(user, str) and user:
            params["metadata"] = {"user_id": user}
        extra: dict[str, Any] = {}
        if self._sampling:
            sampling = {"temperature": call.temperature, "top_p": options.get("top_p")}
            extra = {key: value for key, value in sampling.items() if value is not None}
        extra.update(options.get("extra_body") or {})  # the caller's pass-through, sent as given
        if extra:
            params["extra_body"] = extra
        return params

    # -- answers ---------------------------------------------------------------------------

    def _parse_reply(self, body: bytes) -> Reply:
        try:
            data = json.loads(body)
            if data.get("type") == "error":
                raise self._in_band_error(data.get("error"))
            text: list[str] = []
            tool_calls: list[ToolCall] = []
            for block in data["content"]:
                kind = block["type"]
                if kind == "text":
                    if not isinstance(block["text"], str):
                        raise TypeError("text is not a string")
                    text.append(block["text"])
                elif kind == "tool_use":
                    arguments = json.dumps(block.get("input") or {})
                    tool_calls.append(ToolCall(str(block["id"]), str(block["name"]), arguments))
                # thinking and server-tool blocks are not part of the answer
            stop_reason = data.get("stop_reason")
            usage = _usage(data.get("usage"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                ErrorKind.SERVER_ERROR,
                "malformed response body (not an Anthropic message)",
                provider=self.name,
            ) from None
        if stop_reason == "refusal":
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                "the model declined to answer (stop_reason: refusal)",
                provider=self.name,
            )
        return Reply("".join(text), usage, _finish_reason(stop_reason), tuple(tool_calls))

    def _on_event(self, state: _StreamState, event: str, data: str) -> Chunk | None:
        """What one SSE event adds to the stream; an event that makes no sense is skipped, with a warning."""
        try:
            check_json_event(data)
            payload = json.loads(data)
            if not isinstance(payload, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            if event == "error":
                raise ProviderError(
                    ErrorKind.SERVER_ERROR, "the stream reported an unreadable error", provider=self.name
                ) from None
            return Chunk(warning=f"skipped a malformed stream event ({len(data)} bytes)")
        kind = payload.get("type") or event
        try:
            return state.apply(kind, payload)
        except _InBandError as error:
            raise self._in_band_error(error.body) from None
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            return Chunk(warning=f"skipped a malformed {kind} event ({len(data)} bytes)")

    # -- errors ----------------------------------------------------------------------------

    def _classify(self, error: anthropic.APIError) -> ProviderError:
        if isinstance(error, anthropic.APITimeoutError):
            return ProviderError(ErrorKind.TIMEOUT, "no response before the timeout", provider=self.name)
        if isinstance(error.__cause__, ResponseTooLarge):  # read whole by the SDK, which wraps the error
            return self._transport_error(error.__cause__)
        if isinstance(error, anthropic.APIConnectionError):
            cause = type(error.__cause__).__name__ if error.__cause__ else "connection failed"
            return ProviderError(ErrorKind.CONNECTION, cause, provider=self.name)
        if not isinstance(error, anthropic.APIStatusError):
            return ProviderError(ErrorKind.SERVER_ERROR, "malformed response", provider=self.name)
        status = error.status_code
        error_type, detail = _error_fields(error.body)
        kind = anthropic_kind(status, error_type, detail.lower())
        if kind is ErrorKind.AUTH:
            detail = _AUTH_DETAIL.get(status, "credentials rejected, or no access")
        else:
            detail = redact(
                f"{error_type}: {detail}" if error_type else detail or f"HTTP {status}", self._secrets
            )
        return ProviderError(
            kind, detail, provider=self.name, status=status, retry_after=retry_after(error.response.headers)
        )

    def _in_band_error(self, body: Any) -> ProviderError:
        """An error the upstream reported inside a 200 answer: its type is all there is to go by."""
        error_type, detail = _error_fields({"error": body})
        kind = ANTHROPIC_ERROR_TYPES.get(error_type)
        if kind is None:
            invalid = error_type == "invalid_request_error"
            kind = kind_for_request_error(detail.lower()) if invalid else ErrorKind.SERVER_ERROR
        if kind is ErrorKind.AUTH:
            message = "credentials rejected, or no access"
        else:
            message = redact(f"{error_type or 'error'} in the answer: {detail}", self._secrets)
        return ProviderError(kind, message, provider=self.name)

    def _not_a_stream(self, body: bytes) -> ProviderError:
        try:
            check_json_event(body)  # at most an error's body
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("type") == "error":
            return self._in_band_error(data.get("error"))
        return ProviderError(
            ErrorKind.SERVER_ERROR, "malformed response (a stream was asked for, no event stream came)",
            provider=self.name,
        )  # fmt: skip

    def _transport_error(self, error: httpx2.TransportError) -> ProviderError:
        if isinstance(error, ResponseTooLarge):  # a hostile or broken upstream: fail over, count it
            return ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name)
        kind = ErrorKind.TIMEOUT if isinstance(error, httpx2.TimeoutException) else ErrorKind.CONNECTION
        return ProviderError(kind, type(error).__name__, provider=self.name)

    def _no_credentials(self) -> ProviderError:
        # The SDK's own message (a profile that did not load) may name files; this one is enough.
        return ProviderError(
            ErrorKind.AUTH,
            "no usable API key: set api_key in the policy, or ANTHROPIC_API_KEY",
            provider=self.name,
        )


class _InBandError(Exception):
    def __init__(self, body: Any) -> None:
        self.body = body


@dataclass(slots=True)
class _ToolInProgress:
    id: str
    name: str
    start: Any  # the input the block opened with; used when no deltas follow
    parts: list[str] = field(default_factory=list)

    def done(self) -> ToolCall:
        arguments = "".join(self.parts) if self.parts else json.dumps(self.start or {})
        return ToolCall(self.id, self.name, arguments or "{}")


@dataclass(slots=True)
class _StreamState:
    """What a stream has said so far about usage, tool calls and why it stopped."""

    usage: dict[str, Any] = field(default_factory=dict)
    tools: dict[int, _ToolInProgress] = field(default_factory=dict)
    stop_reason: str | None = None
    stopped: bool = False

    def apply(self, kind: str, event: dict[str, Any]) -> Chunk | None:
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                return _text_chunk(delta["text"])
            if delta["type"] == "input_json_delta":
                self.tools[event["index"]].parts.append(str(delta["partial_json"]))
            return None  # thinking, signatures, citations: not part of the answer
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "tool_use":
                self.tools[event["index"]] = _ToolInProgress(
                    str(block["id"]), str(block["name"]), block.get("input")
                )
            elif block["type"] == "text" and block.get("text"):
                return _text_chunk(block["text"])
            return None
        if kind == "message_start":
            self.usage.update(event["message"].get("usage") or {})
        elif kind == "message_delta":
            self.usage.update(event.get("usage") or {})
            self.stop_reason = event["delta"].get("stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self.stopped = True
            return self.final()
        elif kind == "error":
            raise _InBandError(event.get("error"))
        return None  # ping, content_block_stop, and event types added after this was written

    def final(self) -> Chunk:
        calls = tuple(self.tools[index].done() for index in sorted(self.tools))
        return Chunk(
            finish_reason=_finish_reason(self.stop_reason), usage=_usage(self.usage), tool_calls=calls
        )


def _text_chunk(text: Any) -> Chunk:
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    return Chunk(text=text)


def _render_turns(conversation: Conversation) -> list[dict[str, Any]]:
    turns = list(conversation.turns)
    if conversation.ends_with_assistant:
        prefill = _without_trailing_whitespace(turns.pop())
        if prefill.blocks:
            turns.append(prefill)
    return [{"role": turn.role, "content": [_render_block(block) for block in turn.blocks]} for turn in turns]


def _without_trailing_whitespace(turn: Turn) -> Turn:
    *blocks, last = turn.blocks
    if not isinstance(last, Text):
        return turn
    text = last.text.rstrip()
    return Turn(turn.role, (*blocks, Text(text)) if text else tuple(blocks))


def _render_block(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUse):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ToolResult):
        rendered: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id}
        if block.content:
            rendered["content"] = block.content
        return rendered
    assert isinstance(block, Image)
    inline = parse_data_url(block.url)
    if inline is not None:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if not block.url.startswith(("https://", "http://")):
        raise ValueError("an image must be an http(s) URL or a base64 data: URL")
    return {"type": "image", "source": {"type": "url", "url": block.url}}


def _render_tool_choice(value: Any, parallel: Any) -> dict[str, Any] | None:
    choice = read_tool_choice(value)
    if choice is None:
        if parallel is not False:
            return None
        rendered: dict[str, Any] = {"type": "auto"}
    elif choice.mode == "tool":
        rendered = {"type": "tool", "name": choice.name}
    else:
        rendered = {"type": choice.mode}
    if parallel is False and rendered["type"] != "none":
        rendered["disable_parallel_tool_use"] = True
    return rendered


def _render_response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or value.get("type") != "json_schema":
        return None  # "text", or "json_object", which has no equivalent here
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise ValueError("response_format json_schema needs json_schema.schema")
    return {"type": "json_schema", "schema": dict(schema)}


def _finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH.get(str(stop_reason), str(stop_reason))


def _usage(data: Any) -> Usage:
    """Input counts the cached parts too: Anthropic reports them apart from `input_tokens`."""
    if not isinstance(data, Mapping):
        return Usage()
    fields = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return Usage(sum(_count(data.get(name)) for name in fields), _count(data.get("output_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _error_fields(body: Any) -> tuple[str, str]:
    """(error type, message) from `{"error": {"type", "message"}}` (also OpenAI's shape, with `code`)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            error_type = inner.get("type") or inner.get("code") or ""
            return str(error_type), str(inner.get("message") or "")
    return "", ""
