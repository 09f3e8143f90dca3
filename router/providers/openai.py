"""The OpenAI chat-completions wire, for `openai` and any `openai_compatible` base_url.

The official SDK builds the requests, authenticates and raises typed HTTP errors, with its own
retries off. The body is parsed here rather than by the SDK's models, so that a malformed
answer becomes a typed `server_error` (and a malformed stream event a warning) instead of an
exception from deep inside the SDK.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import openai

from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers._http import (
    TooManyValues,
    check_json_body,
    check_json_event,
    redact,
    retry_after,
    secrets_of,
    server_sent_event_batches,
)
from router.providers.base import Call, Chunk, Reply
from router.providers.kinds import kind_for_status
from router.providers.presets import Preset
from router.providers.transport import ResponseTooLarge, sdk_http_client
from router.results import ToolCall, Usage

__all__ = ["OpenAIProvider"]

_SDK_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body"})  # the SDK's own, not the body's


class OpenAIProvider:
    """One client with one key; key pools wrap several (see `router.providers.pool`)."""

    def __init__(self, name: str, spec: ProviderSpec, key: str | None, preset: Preset | None = None) -> None:
        self.name = name
        self._secrets = secrets_of(spec, key)
        # The official endpoints take max_completion_tokens (reasoning models refuse max_tokens);
        # compatible servers mostly know only max_tokens.
        official = spec.type in ("openai", "azure_openai")
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._stream_usage = preset.stream_usage if preset else True
        headers = {**(preset.headers if preset else {}), **spec.headers} or None
        timeout = httpx2.Timeout(60.0, connect=spec.connect_timeout)
        # A local server needs no key, but the SDK insists on one.
        api_key = key or ("unused" if not official else None)
        http_client = sdk_http_client(spec.transport, spec.max_response_bytes)
        self._client: openai.AsyncOpenAI
        if spec.type == "azure_openai":
            # The target's model is the deployment name; the SDK puts it in the path.
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=spec.base_url or "",
                api_version=spec.api_version,
                api_key=api_key,
                default_headers=headers,
                max_retries=0,
                timeout=timeout,
                http_client=http_client,
            )
        else:
            self._client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=spec.base_url or (preset.base_url if preset else None),
                organization=spec.organization,
                default_headers=headers,
                max_retries=0,
                timeout=timeout,
                http_client=http_client,
            )

    def _params(self, call: Call) -> dict[str, Any]:
        # The body goes in as the SDK's public `extra_body`, which it sends as given: this skips
        # its walk of every request against its typed parameter definitions, about 30 % of a
        # call's CPU, and changes nothing on the wire for chat completions built from plain JSON.
        body: dict[str, Any] = {"messages": call.messages}
        if call.max_tokens is not None:
            body[self._max_tokens_field] = call.max_tokens
        if call.temperature is not None:
            body["temperature"] = call.temperature
        sdk: dict[str, Any] = {}
        for key, value in call.options.items():
            (sdk if key in _SDK_OPTIONS else body)[key] = value
        body.update(sdk.pop("extra_body", None) or {})
        return {"model": call.model, "messages": (), "timeout": call.timeout, "extra_body": body, **sdk}

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """What the SDK and the HTTP stack raise, as this provider's `ProviderError`s."""
        try:
            yield
        except openai.APIError as error:
            raise self._classify(error) from None
        except httpx2.TransportError as error:
            raise self._transport_error(error) from None
        except ProviderError as error:  # an error event inside a stream
            error.provider = self.name
            raise

    async def complete(self, call: Call) -> Reply:
        params = self._params(call)
        # The client's public `post`, as `create` would call it with the body it builds, less what
        # the typed `create` adds per call (its walk of the parameters is ~10 % of a routed call's
        # CPU even over an empty list); the answer comes back unparsed, as raw bytes.
        options: dict[str, Any] = {"timeout": params["timeout"]}
        if "extra_headers" in params:
            options["headers"] = params["extra_headers"]
        if "extra_query" in params:
            options["params"] = params["extra_query"]
        with self._sdk_errors():
            response = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body={"model": params["model"], **params["extra_body"]},
                options=options,
            )
            body = response.content
        try:
            await check_json_body(body)  # what parsing it would cost the loop
        except TooManyValues as error:
            raise ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name) from None
        return self._parse_reply(body)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        params = self._params(call)
        params["stream"] = True
        if self._stream_usage:
            # In the body as given (the caller's extra_body still wins): no walk of the SDK's types.
            params["extra_body"].setdefault("stream_options", {"include_usage": True})
        tools = _ToolCallParts()
        with self._sdk_errors():
            async with self._client.chat.completions.with_streaming_response.create(**params) as response:
                async for events in server_sent_event_batches(response.iter_bytes()):
                    for event in events:
                        if event.data.strip() == "[DONE]":
                            return
                        chunk = _parse_chunk(event.data, tools)
                        if chunk is not None:
                            yield chunk

    async def list_models(self) -> list[str]:
        with self._sdk_errors():
            page = await self._client.models.list()
            return [model.id async for model in page]

    async def aclose(self) -> None:
        await self._client.close()

    def _parse_reply(self, body: bytes) -> Reply:
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            finish = choice.get("finish_reason")
            usage = _usage(data.get("usage"))
            tool_calls = tuple(
                ToolCall(call["id"], call["function"]["name"], call["function"].get("arguments") or "")
                for call in message.get("tool_calls") or ()
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                ErrorKind.SERVER_ERROR,
                "malformed response body (not an OpenAI chat completion)",
                provider=self.name,
            ) from None
        if finish == "content_filter":
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                "the answer was withheld by the provider's content filter",
                provider=self.name,
            )
        if not isinstance(text, str):
            raise ProviderError(
                ErrorKind.SERVER_ERROR, "malformed response body (content is not text)", provider=self.name
            )
        return Reply(text, usage, finish, tool_calls)

    def _transport_error(self, error: httpx2.TransportError) -> ProviderError:
        if isinstance(error, ResponseTooLarge):  # a hostile or broken upstream: fail over, count it
            return ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name)
        kind = ErrorKind.TIMEOUT if isinstance(error, httpx2.TimeoutException) else ErrorKind.CONNECTION
        return ProviderError(kind, type(error).__name__, provider=self.name)

    def _classify(self, error: openai.APIError) -> ProviderError:
        if isinstance(error, openai.APITimeoutError):
            return ProviderError(ErrorKind.TIMEOUT, "no response before the timeout", provider=self.name)
        if isinstance(error.__cause__, ResponseTooLarge):  # read whole by the SDK, which wraps the error
            return self._transport_error(error.__cause__)
        if isinstance(error, openai.APIConnectionError):
            cause = type(error.__cause__).__name__ if error.__cause__ else "connection failed"
            return ProviderError(ErrorKind.CONNECTION, cause, provider=self.name)
        if not isinstance(error, openai.APIStatusError):
            return ProviderError(ErrorKind.SERVER_ERROR, "malformed response", provider=self.name)
        status = error.status_code
        detail = redact(_error_text(error), self._secrets)
        kind = kind_for_status(status, detail.lower())
        if kind is ErrorKind.AUTH:
            detail = "credentials rejected, or no access to this model"  # bodies here may echo key fragments
        return ProviderError(
            kind, detail, provider=self.name, status=status, retry_after=retry_after(error.response.headers)
        )


def _error_text(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type") or ""
            message = inner.get("message") or ""
            return f"{code}: {message}" if code else str(message)
    return f"HTTP {error.status_code}"


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _stream_error(error: dict[str, Any]) -> ProviderError:
    """An error sent inside a 200 stream: classified by its type and code, as its status would be."""
    code = str(error.get("code") or error.get("type") or "")
    message = str(error.get("message") or "")
    detail = f"{code}: {message}".lower()
    if "rate_limit" in detail:
        kind = ErrorKind.RATE_LIMITED
    elif "context_length" in detail:
        kind = ErrorKind.CONTEXT_LENGTH
    elif "content_filter" in detail:
        kind = ErrorKind.CONTENT_FILTER
    else:
        kind = ErrorKind.SERVER_ERROR
    return ProviderError(kind, f"error event in the stream: {code or 'unknown'}")


class _ToolCallParts:
    """Tool calls arrive in pieces keyed by index (id and name first, arguments after)."""

    def __init__(self) -> None:
        self._parts: dict[int, list[str]] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas:
            parts = self._parts.setdefault(int(delta.get("index", 0)), ["", "", ""])
            function = delta.get("function") or {}
            parts[0] = delta.get("id") or parts[0]
            parts[1] = function.get("name") or parts[1]
            parts[2] += function.get("arguments") or ""

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(*self._parts[index]) for index in sorted(self._parts))


def _parse_chunk(data: str, tools: _ToolCallParts) -> Chunk | None:
    try:
        check_json_event(data)
        event = _json(data)
        error = event.get("error")
        if isinstance(error, dict):
            raise _stream_error(error)
        choices = event.get("choices")
        usage = event.get("usage")
        if usage:
            usage = _usage(usage)
        if not choices:
            return Chunk(usage=usage) if usage else None
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        if type(text) is not str:
            raise TypeError("content is not text")
        if delta.get("tool_calls"):
            tools.add(delta["tool_calls"])
        finish = choice.get("finish_reason")
        return Chunk(text, finish, usage or None, None, tools.calls() if finish else ())
    except (ValueError, TypeError, AttributeError, KeyError):
        return Chunk(warning=f"skipped a malformed stream event ({len(data)} bytes)")


# The C scanner `json.loads` ends in (typeshed does not declare the attribute).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json(text: str) -> Any:
    """`json.loads` of one event, without its wrapper's steps (an event is parsed per streamed token)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # not a value where it starts (leading blanks, or not JSON): the full path says
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        raise ValueError("extra data after the JSON value")
    return value
