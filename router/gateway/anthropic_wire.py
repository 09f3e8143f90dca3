"""Anthropic's Messages wire (`POST /v1/messages`), translated to and from the router's OpenAI shape, so
that Anthropic SDK clients and agents can use any provider behind a route.

In: `system`, text, image (base64 or URL), `tool_use` and `tool_result` blocks, `tools`, `tool_choice`,
`stop_sequences`, `max_tokens`, `temperature`, `top_p`, `metadata`. Fields with no meaning behind
a route of any provider (`thinking`, `top_k`, ...) are left out and named in the `x-router-ignored`
header. Out: a `message` with text and `tool_use` blocks, or the stream's events (`message_start`,
`content_block_start`/`delta`/`stop`, `message_delta`, `message_stop`). A restart (see
`StreamRestart`) closes the text block and goes on in a new one, after an SSE comment naming it:
the last text block is the answer. Errors are Anthropic's `{"type": "error", "error": {...}}`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from router.gateway.failures import Failure
from router.gateway.openai_wire import finish_reason
from router.gateway.wire import (
    Item,
    Trail,
    WireCall,
    bad_request,
    control_of,
    event_bytes,
    field_of,
    model_and_messages,
    relay,
)
from router.results import Completion, StreamRestart, ToolCall

__all__ = ["ANTHROPIC", "AnthropicWire"]

# OpenAI's finish reasons as Anthropic's stop reasons (the inverse of the Anthropic adapter's table).
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_TYPES |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 504: "timeout_error"}
_READ = frozenset(
    {"model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "stream"}
    | {"tools", "tool_choice", "metadata", "router"}
)


class AnthropicWire:
    name = "anthropic"

    def parse(self, body: Any) -> WireCall:
        model, messages = model_and_messages(body)
        converted = _system(body.get("system"))
        for index, message in enumerate(messages):
            converted += _message(message, f"messages[{index}]")
        arguments = {
            name: body[name] for name in ("max_tokens", "temperature", "top_p") if body.get(name) is not None
        }
        if body.get("stop_sequences") is not None:
            arguments["stop"] = body["stop_sequences"]
        if body.get("tools") is not None:
            arguments["tools"] = _tools(body["tools"])
        arguments |= _tool_choice(body.get("tool_choice"))
        stream = bool(field_of(body, "stream", bool, "true or false"))
        return WireCall(model, converted, stream, arguments, control_of(body), ignored=_ignored(body))

    def answer(
        self, completion: Completion, call: WireCall, trail: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": completion.text}] if completion.text else []
        content += [_tool_use(tool_call) for tool_call in completion.tool_calls]
        body: dict[str, Any] = {
            "id": _identifier(),
            "type": "message",
            "role": "assistant",
            "model": completion.model,
            "content": content,
            "stop_reason": _stop_reason(completion),
            "stop_sequence": None,
            "usage": {
                "input_tokens": completion.usage.input_tokens,
                "output_tokens": completion.usage.output_tokens,
            },
        }
        if trail is not None:
            body["router"] = trail
        return body

    def error(self, failure: Failure) -> dict[str, Any]:
        kind = _TYPES.get(failure.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": failure.message}}

    async def stream(
        self, response: web.StreamResponse, items: AsyncIterator[Item], call: WireCall, trail: Trail | None
    ) -> None:
        start: dict[str, Any] = {
            "id": _identifier(),
            "type": "message",
            "role": "assistant",
            "model": call.route,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        await response.write(_event("message_start", {"message": start}))
        blocks = _Blocks(response)

        async def failed(failure: Failure) -> None:
            await response.write(_event("error", self.error(failure)))

        completion = await relay(items, blocks.text, blocks.restart, failed)
        if completion is None:
            return
        await blocks.close()
        for tool_call in completion.tool_calls:
            await blocks.tool_use(tool_call)
        usage = {
            "input_tokens": completion.usage.input_tokens,
            "output_tokens": completion.usage.output_tokens,
        }
        delta: dict[str, Any] = {
            "delta": {"stop_reason": _stop_reason(completion), "stop_sequence": None},
            "usage": usage,
        }
        if trail is not None:
            delta["router"] = trail(completion)
        await response.write(_event("message_delta", delta))
        await response.write(_event("message_stop", {}))


ANTHROPIC = AnthropicWire()


class _Blocks:
    """The content blocks of one streamed message: a text block open while text comes, then tool uses."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.index = 0
        self.open = False

    async def text(self, text: str) -> None:
        if not self.open:
            block = {"type": "text", "text": ""}
            await self.response.write(
                _event("content_block_start", {"index": self.index, "content_block": block})
            )
            self.open = True
        delta = {"index": self.index, "delta": {"type": "text_delta", "text": text}}
        await self.response.write(_event("content_block_delta", delta))

    async def restart(self, restart: StreamRestart) -> None:
        await self.close()
        note = (
            f": router restart: {restart.broken} broke ({restart.reason}); {restart.target} answers anew\n\n"
        )
        await self.response.write(note.encode())

    async def tool_use(self, call: ToolCall) -> None:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        await self.response.write(
            _event("content_block_start", {"index": self.index, "content_block": block})
        )
        delta = {"index": self.index, "delta": {"type": "input_json_delta", "partial_json": call.arguments}}
        await self.response.write(_event("content_block_delta", delta))
        self.open = True
        await self.close()

    async def close(self) -> None:
        if self.open:
            await self.response.write(_event("content_block_stop", {"index": self.index}))
            self.index += 1
            self.open = False


def _ignored(body: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(name for name in body if name not in _READ))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return event_bytes({"type": name, **data}, name)


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if isinstance(system, list):
        return [{"role": "system", "content": "".join(_texts(system, "system"))}]
    raise bad_request("system must be a text or a list of text blocks")


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI messages: a user turn's tool results become `tool` messages first."""
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise bad_request(f"{where} must be an object whose role is user or assistant")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a text or a list of content blocks")
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}})
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block, at))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, at))
        else:
            raise bad_request(f"{at}: a block of type {kind!r} is not supported in a {role} message")
    if role == "assistant":
        text = "".join(part["text"] for part in parts)
        return [{"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}]
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _texts(blocks: list[Any], where: str) -> list[str]:
    texts = []
    for index, block in enumerate(blocks):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise bad_request(f"{where}[{index}] must be a text block")
        texts.append(block["text"])
    return texts


def _image_url(source: Any, where: str) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return f"data:{media_type};base64,{data}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise bad_request(f"{where}: an image needs a base64 or url source")


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise bad_request(f"{where}: a tool_use block needs an id and a name")
    arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise bad_request(f"{where}: a tool_result block needs a tool_use_id")
    content = block.get("content")
    if isinstance(content, list):
        content = "".join(_texts(content, f"{where}.content"))
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise bad_request(f"{where}.content must be a text or a list of text blocks")
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad_request("tools must be a list")
    converted = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise bad_request(f"tools[{index}] needs a name")
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    chosen: Any
    if kind in ("auto", "none"):
        chosen = kind
    elif kind == "any":
        chosen = "required"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chosen = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise bad_request("tool_choice must be {type: auto | any | none} or {type: tool, name}")
    arguments: dict[str, Any] = {"tool_choice": chosen}
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
        arguments["parallel_tool_calls"] = False
    return arguments


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        arguments = {}  # the model wrote no JSON: Anthropic's wire has no place for the text
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _stop_reason(completion: Completion) -> str:
    reason = finish_reason(completion)
    return _STOP.get(reason, reason)


def _identifier() -> str:
    return f"msg_{secrets.token_hex(12)}"
