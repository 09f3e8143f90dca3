"""What every wire of the fake upstream shares: the request as read, the answer to render, the interface.

A `Wire` knows one protocol's shapes and nothing else: it reads a request into a `Chat` and
renders an `Answer` (a JSON body, or stream events plus a terminator), a `Rejection` (an error
status and body), a malformed event and an in-stream error. Choosing faults, timing them,
cutting connections and logging belong to the fake upstream, the same for every wire.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from aiohttp import web

from router.testing.faults import InStreamError, Rejection

__all__ = [
    "Answer",
    "BadRequest",
    "Chat",
    "Finish",
    "Stream",
    "Wire",
    "content_text",
    "continuation",
    "estimate_tokens",
    "split_words",
]

# How an answer ended, in OpenAI's words; each wire translates (`end_turn`, `max_tokens`, ...).
Finish = Literal["stop", "length", "tool_calls", "content_filter"]


class BadRequest(ValueError):
    """A request the wire cannot read; answered with a 400 in the wire's shape."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Chat:
    """What a chat request asked for, as far as the fake needs to know.

    `include_usage` is OpenAI's `stream_options.include_usage`; other wires always send usage.
    `prefill` is the text of a trailing assistant message (the answer to continue), when there is one.
    """

    model: str
    stream: bool
    prompt_tokens: int
    ends_with_assistant: bool
    include_usage: bool = False
    prefill: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """The deterministic reply to one request, before a wire gives it a shape.

    `pieces` join to the text, or to the tool call's JSON arguments when `tool` names one; a
    stream sends one piece per content event. `empty` answers carry no content at all.
    """

    chat: Chat
    number: int
    pieces: tuple[str, ...]
    finish: Finish | None  # None: the answer does not say how it ended (`no_finish`)
    tool: str | None = None
    empty: bool = False
    created: int = 0
    started: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return 0 if self.empty else estimate_tokens(self.text)

    @property
    def tool_input(self) -> dict[str, Any]:
        """The tool call's arguments as an object; `{}` when they are cut short (`truncated`)."""
        try:
            value = json.loads(self.text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def latency_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: encoded events, which of them finishes, and the terminator after them.

    A cut strikes before `events[finish]`; `no_done` leaves out the `terminator`.
    """

    events: list[bytes]
    finish: int
    terminator: bytes


class Wire(ABC):
    """One wire protocol: where its requests arrive and what its answers look like."""

    name: ClassVar[str]
    chat_paths: ClassVar[tuple[str, ...]]
    models_path: ClassVar[str]
    # What a client's base URL adds to the server's root: the OpenAI SDK's `/v1`; other SDKs
    # append their whole paths to the root.
    client_path: ClassVar[str] = ""
    stream_content_type: ClassVar[str] = "text/event-stream"
    # Bedrock reports a tripped content filter as a normal answer, not as an error status.
    filters_in_band: ClassVar[bool] = False

    def accepts(self, request: web.Request) -> bool:
        """Whether this wire answers `request` when several share its path (`GET /v1/models`)."""
        return True

    def routes(self) -> Iterable[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        """Endpoints the wire serves beside its chat and models paths, as (method, path, handler):
        Google's OAuth token endpoint, which service-account credentials call."""
        return ()

    @abstractmethod
    def read(self, request: web.Request, body: Any) -> Chat:
        """The request's `Chat`; raises `BadRequest` when the wire's API would refuse it."""

    @abstractmethod
    def reject(self, fault: Rejection, model: str) -> web.Response:
        """The error response for `fault`."""

    @abstractmethod
    def body(self, answer: Answer) -> dict[str, Any]:
        """The JSON body of a non-streamed answer."""

    def headers(self, answer: Answer) -> dict[str, str]:
        """Headers of a successful answer (request ids)."""
        return {}

    @abstractmethod
    def stream(self, answer: Answer) -> Stream:
        """The events of a streamed answer."""

    @abstractmethod
    def malformed(self, answer: Answer) -> bytes:
        """One stream event whose JSON does not parse."""

    @abstractmethod
    def stream_error(self, fault: InStreamError, answer: Answer) -> bytes:
        """The in-band error event that ends a stream."""

    @abstractmethod
    def models(self, models: list[str]) -> dict[str, Any]:
        """The body of the models listing."""


def continuation(prefill: str, reply: str, known: Iterable[str] = ()) -> str:
    """What a model answering `reply` writes after the assistant prefill `prefill`.

    The rest of its own reply when that begins with the prefill; else the rest of a `known` reply
    that does (another model's answer to the same question, which this one carries on); else its
    whole reply, as a model that ignores the prefill would.
    """
    for whole in (reply, *known):
        if prefill and whole.startswith(prefill):
            return whole[len(prefill) :]
    return reply


def content_text(content: object) -> str:
    """The text of an OpenAI-shaped message `content`: the string, or its parts' text joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


def split_words(text: str) -> list[str]:
    """`text` in word-sized pieces that join back to it exactly."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])
