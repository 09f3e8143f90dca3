"""The Anthropic Messages wire: `POST /v1/messages` and, with an `anthropic-version` header, `GET /v1/models`.

Requests are checked as the API checks them (the `anthropic-version` header, `max_tokens`,
user/assistant roles only, `system` at the top level). Streams are named SSE events:
`message_start`, `ping`, `content_block_start`, `content_block_delta` per word (`text_delta`, or
`input_json_delta` for a tool call), `content_block_stop`, `message_delta` (stop reason, output
tokens) and the terminator `message_stop`; errors, in-band ones too, are
`{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web

from router.testing.faults import (
    ContentFilter,
    ContextLength,
    ExceptionInStream,
    HttpError,
    InStreamError,
    Rejection,
    RejectPrefill,
)
from router.testing.wires.base import Answer, BadRequest, Chat, Stream, Wire, estimate_tokens

__all__ = ["LISTED_WINDOW", "AnthropicWire"]

LISTED_WINDOW = 200_000
"""The `max_input_tokens` the fake listing reports for every model."""

# status -> (error type, message), what the Messages API sends.
_STATUS_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization. Try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}

_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}

# Bedrock's stream exception names, as the Messages API would say them.
_IN_STREAM = {
    "internalServerException": ("api_error", "Internal server error"),
    "modelStreamErrorException": ("api_error", "Internal server error"),
    "serviceUnavailableException": ("overloaded_error", "Overloaded"),
    "throttlingException": ("rate_limit_error", "Rate limited. Please try again later."),
    "validationException": ("invalid_request_error", "Invalid request."),
}

_PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)


class AnthropicWire(Wire):
    name: ClassVar[str] = "anthropic"
    chat_paths: ClassVar[tuple[str, ...]] = ("/v1/messages",)
    models_path: ClassVar[str] = "/v1/models"

    def accepts(self, request: web.Request) -> bool:
        return "anthropic-version" in request.headers

    def read(self, request: web.Request, body: Any) -> Chat:
        if "anthropic-version" not in request.headers:
            raise BadRequest("anthropic-version: header is required")
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages: at least one message is required")
        for index, message in enumerate(messages):
            role = message.get("role")
            if role == "system":
                raise BadRequest(
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                    'parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise BadRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        system = body.get("system")
        texts = [_text(system)] + [_text(message.get("content")) for message in messages]
        return Chat(
            model=model,
            stream=bool(body.get("stream", False)),
            prompt_tokens=estimate_tokens("".join(texts)),
            ends_with_assistant=messages[-1]["role"] == "assistant",
            prefill=_text(messages[-1].get("content")) if messages[-1]["role"] == "assistant" else "",
        )

    def reject(self, fault: Rejection, model: str) -> web.Response:
        headers: dict[str, str] = {}
        match fault:
            case HttpError():
                status = fault.status
                type_, message = _STATUS_DEFAULTS.get(
                    status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
                )
                if status == 404 and model:
                    message = f"model: {model}"
                type_, message = fault.type or type_, fault.message or message
                headers.update(fault.headers)
            case ContextLength(limit=limit):
                status, type_ = 400, "invalid_request_error"
                message = f"prompt is too long: {limit + 1_000} tokens > {limit} maximum"
            case ContentFilter(category=category):
                status, type_ = 400, "invalid_request_error"
                message = (
                    "Output blocked by content filtering policy: this request appears to violate our "
                    f"Usage Policy (category: {category})."
                )
            case RejectPrefill():
                status, type_, message = 400, "invalid_request_error", _PREFILL_MESSAGE
            case _:
                raise TypeError(f"not a rejection: {fault!r}")
        return web.json_response(_error(type_, message), status=status, headers=headers)

    def headers(self, answer: Answer) -> dict[str, str]:
        return {"request-id": f"req_fake{answer.number:06d}"}

    def body(self, answer: Answer) -> dict[str, Any]:
        return self._message(answer) | {
            "content": [] if answer.empty else [self._block(answer, whole=True)],
            "stop_reason": _FINISH.get(answer.finish or ""),
            "usage": {"input_tokens": answer.chat.prompt_tokens, "output_tokens": answer.completion_tokens},
        }

    def _message(self, answer: Answer) -> dict[str, Any]:
        return {
            "id": f"msg_fake{answer.number:06d}",
            "type": "message",
            "role": "assistant",
            "model": answer.chat.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.chat.prompt_tokens, "output_tokens": 1},
        }

    def _block(self, answer: Answer, *, whole: bool) -> dict[str, Any]:
        """The content block: whole, or empty as `content_block_start` opens it before the deltas."""
        if answer.tool is None:
            return {"type": "text", "text": answer.text if whole else ""}
        return {
            "type": "tool_use",
            "id": f"toolu_fake{answer.number:06d}",
            "name": answer.tool,
            "input": answer.tool_input if whole else {},
        }

    def stream(self, answer: Answer) -> Stream:
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": self._message(answer)}),
            ("ping", {"type": "ping"}),
        ]
        if not answer.empty:
            events.extend(self._content_events(answer))
        finish = len(events)
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _FINISH.get(answer.finish or ""), "stop_sequence": None},
                    "usage": {"output_tokens": answer.completion_tokens},
                },
            )
        )
        return Stream(
            events=[_sse(name, data) for name, data in events],
            finish=finish,
            terminator=_sse("message_stop", {"type": "message_stop"}),
        )

    def _content_events(self, answer: Answer) -> list[tuple[str, dict[str, Any]]]:
        """The content block's events: its start, a delta per piece, its stop."""
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": self._block(answer, whole=False),
                },
            )
        ]
        for piece in answer.pieces:
            if answer.tool is None:
                delta = {"type": "text_delta", "text": piece}
            else:
                delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        return events

    def malformed(self, answer: Answer) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta\n\n'

    def stream_error(self, fault: InStreamError, answer: Answer) -> bytes:
        if isinstance(fault, ExceptionInStream):
            type_, message = _IN_STREAM[fault.exception]
        else:
            type_, message = "overloaded_error", "Overloaded"
        return _sse("error", {"type": "error", "error": {"type": type_, "message": message}})

    def models(self, models: list[str]) -> dict[str, Any]:
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": "2025-01-01T00:00:00Z",
                # As Anthropic's listing reports it (the router learns a window it is not told).
                "max_input_tokens": LISTED_WINDOW,
            }
            for model in models
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }


def _error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _text(content: Any) -> str:
    """The text in a `system` or message `content`: a string, or blocks (text, tool_use, tool_result)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif "input" in block:
            parts.append(json.dumps(block["input"]))
        elif "content" in block:
            parts.append(_text(block["content"]))
    return "".join(parts)
