"""OpenAI-shaped chat messages and tool options, read into neutral values for other wires.

Pure functions, no SDK. `read_conversation` hoists the system prompt and turns the rest into
strictly alternating user/assistant `Turn`s of typed blocks (text, image, tool use, tool
result); `read_tools`, `read_tool_choice` and `read_stop` read the options. Each adapter
renders these into its own wire (Anthropic Messages, Bedrock Converse).

Anything that cannot be translated raises `ValueError` with a message meant for the caller;
adapters report it as a `bad_request`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Block",
    "Conversation",
    "Image",
    "Text",
    "ToolChoice",
    "ToolResult",
    "ToolSpec",
    "ToolUse",
    "Turn",
    "parse_data_url",
    "read_conversation",
    "read_stop",
    "read_tool_choice",
    "read_tools",
]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image part: an http(s) URL or a `data:` URL (see `parse_data_url`)."""

    url: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool call the assistant made; `input` is its arguments, decoded."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the caller's tool returned for the call `tool_use_id`, as text."""

    tool_use_id: str
    content: str


Block = Text | Image | ToolUse | ToolResult


@dataclass(frozen=True, slots=True)
class Turn:
    """One side's contribution; never empty, and never next to a turn of the same role."""

    role: Literal["user", "assistant"]
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Conversation:
    """`system`: every system (and developer) message's text, in order; `turns`: the rest."""

    system: tuple[str, ...]
    turns: tuple[Turn, ...]

    @property
    def ends_with_assistant(self) -> bool:
        """A trailing assistant turn: a prefill for the model to continue."""
        return bool(self.turns) and self.turns[-1].role == "assistant"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of an object


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`: the model decides; `any`: it must call some tool; `none`: no tool; `tool`: `name`."""

    mode: Literal["auto", "any", "none", "tool"]
    name: str | None = None


_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def read_conversation(messages: Iterable[Mapping[str, Any]]) -> Conversation:
    """Split off the system prompt, and merge the rest into alternating turns.

    System messages anywhere in the list are hoisted: these wires take one system prompt.
    `tool` messages become user turns of tool results, and in a user turn the tool results
    come before anything else (Anthropic requires it; it costs Converse nothing). Empty text
    is dropped, and so are turns left with nothing in them.
    """
    system: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{index}] is not an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"), f"messages[{index}]")
            if text:
                system.append(text)
            continue
        if role == "user":
            turn = Turn("user", _content_blocks(message.get("content"), f"messages[{index}]"))
        elif role == "assistant":
            turn = Turn("assistant", _assistant_blocks(message, f"messages[{index}]"))
        elif role == "tool":
            turn = Turn("user", (_tool_result(message, f"messages[{index}]"),))
        else:
            raise ValueError(f"messages[{index}]: role {role!r} is not supported on this provider")
        if not turn.blocks:
            continue
        if turns and turns[-1].role == turn.role:
            turns[-1] = Turn(turn.role, turns[-1].blocks + turn.blocks)
        else:
            turns.append(turn)
    return Conversation(tuple(system), tuple(_results_first(turn) for turn in turns))


def read_tools(tools: Any) -> list[ToolSpec]:
    """OpenAI function tools (`{"type": "function", "function": {name, description, parameters}}`)."""
    if tools is None:
        return []
    if not isinstance(tools, Sequence) or isinstance(tools, str):
        raise ValueError("tools must be a list")
    specs = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            raise ValueError(f"tools[{index}]: only function tools are supported on this provider")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError(f"tools[{index}]: a function tool needs function.name")
        parameters = function.get("parameters") or _EMPTY_SCHEMA
        if not isinstance(parameters, Mapping):
            raise ValueError(f"tools[{index}]: function.parameters must be a JSON schema object")
        specs.append(ToolSpec(function["name"], str(function.get("description") or ""), dict(parameters)))
    return specs


def read_tool_choice(choice: Any) -> ToolChoice | None:
    """`"auto"`, `"required"` (-> any), `"none"`, or `{"type": "function", "function": {"name": ...}}`."""
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return ToolChoice(choice)
    if choice == "required":
        return ToolChoice("any")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return ToolChoice("tool", function["name"])
    raise ValueError(f"tool_choice {choice!r} is not understood")


def read_stop(stop: Any) -> list[str]:
    """`stop` as a string or a list of strings; empty strings are dropped."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, Sequence) and all(isinstance(item, str) for item in stop):
        return [item for item in stop if item]
    raise ValueError("stop must be a string or a list of strings")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,AAA...` -> `("image/png", "AAA...")`; None for any other URL."""
    match = _DATA_URL.match(url)
    return (match["media_type"], match["data"]) if match else None


def _content_blocks(content: Any, where: str) -> tuple[Block, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (Text(content),) if content else ()
    if not isinstance(content, Sequence):
        raise ValueError(f"{where}: content must be a string or a list of parts")
    blocks: list[Block] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{where}: a text part needs text")
            if text:
                blocks.append(Text(text))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if not isinstance(url, str) or not url:
                raise ValueError(f"{where}: an image_url part needs a url")
            blocks.append(Image(url))
        elif kind == "refusal":
            continue  # an earlier refusal, as OpenAI reports it: no content to carry over
        else:
            raise ValueError(f"{where}: content parts of type {kind!r} are not supported on this provider")
    return tuple(blocks)


def _text_of(content: Any, where: str) -> str:
    blocks = _content_blocks(content, where)
    if any(not isinstance(block, Text) for block in blocks):
        raise ValueError(f"{where}: only text is supported here")
    return "".join(block.text for block in blocks if isinstance(block, Text))


def _assistant_blocks(message: Mapping[str, Any], where: str) -> tuple[Block, ...]:
    blocks = list(_content_blocks(message.get("content"), where))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError(f"{where}.tool_calls[{index}]: a tool call needs function.name")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError(f"{where}.tool_calls[{index}]: a tool call needs an id")
        blocks.append(ToolUse(call_id, function["name"], _arguments(function.get("arguments"), where)))
    return tuple(blocks)


def _arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: tool call arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: tool call arguments must be a JSON object")
    return value


def _tool_result(message: Mapping[str, Any], where: str) -> ToolResult:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ValueError(f"{where}: a tool message needs tool_call_id")
    return ToolResult(call_id, _text_of(message.get("content"), where))


def _results_first(turn: Turn) -> Turn:
    if turn.role != "user":
        return turn
    results = [block for block in turn.blocks if isinstance(block, ToolResult)]
    if not results:
        return turn
    return Turn("user", (*results, *(block for block in turn.blocks if not isinstance(block, ToolResult))))
