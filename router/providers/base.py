"""The provider interface: one adapter per wire protocol, each a file of its own.

An adapter turns a `Call` into a `Reply` (or a stream of `Chunk`s) and every failure into a
`ProviderError` with a kind. It never retries: retries, failover and timeouts belong to the
engine, which also judges whether a stream ended properly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.results import ToolCall, Usage

__all__ = ["Call", "Chunk", "Message", "Provider", "Reply"]

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One request to one model; `timeout` is what the adapter may spend, in seconds.

    `messages` and `options` are in OpenAI's chat shape (roles system/user/assistant/tool,
    `tool_calls` on assistant messages; options `tools`, `tool_choice`, `stop`,
    `response_format`, ...); adapters of other wires translate them.
    """

    model: str
    messages: Sequence[Message]
    timeout: float
    max_tokens: int | None = None
    temperature: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    usage: Usage
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a stream: text, the finish (reason, usage, tool calls), or a warning about a bad event.

    Adapters assemble tool calls from their deltas and hand them over whole, with the finish.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    warning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class Provider(Protocol):
    name: str

    async def complete(self, call: Call) -> Reply: ...

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        """Chunks as they arrive; the iterator ends when the upstream ends, properly or not."""
        ...

    async def list_models(self) -> list[str]:
        """The model ids the provider offers; also the cheapest health probe."""
        ...

    async def aclose(self) -> None: ...
