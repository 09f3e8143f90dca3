"""The OpenAI chat completions wire (`POST /v1/chat/completions`): the router's own shape, so a body's
messages and options pass through as they are.

Streams are OpenAI's chunks: the role first, content deltas, the tool calls (whole, once the answer
is in: the router hands them over with the completion), a last chunk with `finish_reason`, a usage
chunk when `stream_options.include_usage`, then `data: [DONE]`. A restart (the answer broke and
starts over on another target, see `StreamRestart`) is a chunk with an empty delta and
`router.restart` (`replaced`: the characters of text the deltas after it replace); OpenAI's SDKs
keep the field on the chunk. An error after the first chunk is a chunk `{"error": {...}}` and no
`[DONE]`, which OpenAI's SDKs raise as an `APIError`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from router.gateway.failures import Failure
from router.gateway.wire import (
    Item,
    Trail,
    WireCall,
    control_of,
    event_bytes,
    field_of,
    model_and_messages,
    relay,
)
from router.options import PROVIDER_OPTIONS
from router.results import Completion, StreamRestart, ToolCall, Usage

__all__ = ["OPENAI", "OpenAIWire"]

# Fields the wire reads itself; every other field but the provider options goes on as `extra_body`,
# where the router refuses the names it owns (`n`, `timeout`, ...) with a hint.
_READ = frozenset(
    {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature"}
    | {"metadata", "router"}
)
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_TYPES |= {
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


class OpenAIWire:
    name = "openai"

    def parse(self, body: Any) -> WireCall:
        model, messages = model_and_messages(body)
        stream_options = field_of(body, "stream_options", dict, "an object") or {}
        arguments: dict[str, Any] = {}
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None:
            arguments["max_tokens"] = max_tokens
        if body.get("temperature") is not None:
            arguments["temperature"] = body["temperature"]
        arguments |= {name: value for name, value in body.items() if name in PROVIDER_OPTIONS}
        extra = {
            name: value
            for name, value in body.items()
            if name not in _READ and name not in PROVIDER_OPTIONS and not (name == "n" and value == 1)
        }
        if extra:
            arguments["extra_body"] = extra
        return WireCall(
            model,
            messages,
            bool(field_of(body, "stream", bool, "true or false")),
            arguments,
            control_of(body),
            bool(stream_options.get("include_usage")),
        )

    def answer(
        self, completion: Completion, call: WireCall, trail: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": completion.text if completion.text or not completion.tool_calls else None,
        }
        if completion.tool_calls:
            message["tool_calls"] = [_tool_call(call) for call in completion.tool_calls]
        body: dict[str, Any] = {
            "id": _identifier(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": completion.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish_reason(completion), "logprobs": None}
            ],
            "usage": _usage(completion.usage),
        }
        if trail is not None:
            body["router"] = trail
        return body

    def error(self, failure: Failure) -> dict[str, Any]:
        kind = _TYPES.get(failure.status, "api_error")
        return {"error": {"message": failure.message, "type": kind, "code": failure.kind, "param": None}}

    async def stream(
        self, response: web.StreamResponse, items: AsyncIterator[Item], call: WireCall, trail: Trail | None
    ) -> None:
        chunks = _Chunks(call.route)
        await response.write(chunks.delta({"role": "assistant", "content": ""}))

        async def text(piece: str) -> None:
            await response.write(chunks.delta({"content": piece}))

        async def restart(item: StreamRestart) -> None:
            await response.write(chunks.delta({}, router={"restart": _restart(item)}))

        async def failed(failure: Failure) -> None:
            await response.write(event_bytes(self.error(failure)))

        completion = await relay(items, text, restart, failed)
        if completion is None:
            return
        for index, tool_call in enumerate(completion.tool_calls):
            await response.write(chunks.delta({"tool_calls": [{"index": index, **_tool_call(tool_call)}]}))
        extra = {"router": trail(completion)} if trail is not None else {}
        await response.write(chunks.delta({}, finish_reason(completion), **extra))
        if call.include_usage:
            await response.write(chunks.chunk([], usage=_usage(completion.usage)))
        await response.write(b"data: [DONE]\n\n")


OPENAI = OpenAIWire()


class _Chunks:
    """The chunks of one stream: the same id, time and model on each."""

    def __init__(self, model: str) -> None:
        self.head = {"id": _identifier(), "object": "chat.completion.chunk", "created": int(time.time())}
        self.head["model"] = model

    def delta(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return self.chunk([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra)

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return event_bytes({**self.head, "choices": choices, **extra})


def finish_reason(completion: Completion) -> str:
    return completion.finish_reason or ("tool_calls" if completion.tool_calls else "stop")


def _restart(restart: StreamRestart) -> dict[str, Any]:
    replaced = len(restart.replaced)
    return {
        "broken": restart.broken,
        "target": restart.target,
        "reason": restart.reason,
        "replaced": replaced,
    }


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _identifier() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"
