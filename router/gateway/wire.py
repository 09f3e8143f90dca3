"""What every HTTP wire of the gateway does: read a request body into a `WireCall` in the router's
(OpenAI) shape, render a `Completion` or a `Failure` back, and write a stream's events.

A wire is a `Wire` (`openai_wire.OPENAI`, `anthropic_wire.ANTHROPIC`); `app.py` does the rest
(keys, control, the router's call, headers) once for both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from router.gateway.failures import Failure, Refusal, failure_of
from router.results import Completion, StreamRestart

__all__ = [
    "Item",
    "Trail",
    "Wire",
    "WireCall",
    "bad_request",
    "control_of",
    "event_bytes",
    "field_of",
    "model_and_messages",
    "relay",
]

Item = str | StreamRestart | Completion
Trail = Callable[[Completion], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WireCall:
    """A request read off a wire: `route` as the caller named it, the messages and keyword arguments of
    `Router.complete()` in OpenAI's shape, and the caller's per-request control (the `router` object,
    and the body's own metadata)."""

    route: str
    messages: list[dict[str, Any]]
    stream: bool
    arguments: dict[str, Any] = field(default_factory=dict)
    control: dict[str, Any] = field(default_factory=dict)
    include_usage: bool = False
    ignored: tuple[str, ...] = ()  # fields of the body the wire left out


class Wire(Protocol):
    name: str

    def parse(self, body: Any) -> WireCall:
        """The call a body asks for; raises `Refusal` (400) for a body this wire does not take."""
        ...

    def answer(
        self, completion: Completion, call: WireCall, trail: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The whole answer's body (`trail`, when asked for, goes in as `router`)."""
        ...

    def error(self, failure: Failure) -> dict[str, Any]:
        """The body of an error answer."""
        ...

    async def stream(
        self,
        response: web.StreamResponse,
        items: AsyncIterator[Item],
        call: WireCall,
        trail: Trail | None,
    ) -> None:
        """Write the stream's events, then its end (with `trail(completion)` when given); an error after the
        first event is written as an event."""
        ...


async def relay(
    items: AsyncIterator[Item],
    text: Callable[[str], Awaitable[None]],
    restart: Callable[[StreamRestart], Awaitable[None]],
    failed: Callable[[Failure], Awaitable[None]],
) -> Completion | None:
    """Hand a stream's texts and restarts to the wire as they come; the completion that ends it, or
    None when it failed after its first event (`failed` has then written the error as an event)."""
    completion: Completion | None = None
    try:
        async for item in items:
            if isinstance(item, str):
                await text(item)
            elif isinstance(item, StreamRestart):
                await restart(item)
            else:
                completion = item
    except ConnectionError:
        raise  # the client is gone: nothing more to tell it
    except Exception as error:
        await failed(failure_of(error) or Failure(500, "internal_error", "the gateway failed; see its log"))
        return None
    assert completion is not None  # a stream ends with its completion
    return completion


def bad_request(message: str) -> Refusal:
    return Refusal(400, "invalid_request", message)


def field_of(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """`body[name]` if present and of `kind` (None when absent); a `Refusal` naming it otherwise."""
    value = body.get(name)
    # JSON's true and false are Python ints: a number field must not take them.
    wrong_bool = isinstance(value, bool) and bool not in _kinds(kind)
    if value is not None and (wrong_bool or not isinstance(value, kind)):
        raise bad_request(f"{name} must be {what}")
    return value


def model_and_messages(body: Any) -> tuple[str, list[Any]]:
    """The two fields both wires need: the route (a route, an alias or provider:model) and the messages."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    model = field_of(body, "model", str, "the name of a route, an alias or provider:model")
    if not model:
        raise bad_request("model is required: the name of a route, an alias or provider:model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a list of at least one message")
    return model, messages


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def control_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's per-request control: its `router` object, with the body's own `metadata` under it."""
    control = body.get("router")
    if control is not None and not isinstance(control, dict):
        raise bad_request("router must be an object of per-request controls")
    control = dict(control or {})
    metadata = body.get("metadata")
    if metadata is not None:
        control.setdefault("metadata", metadata)
    return control


def event_bytes(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `event:` when named, one `data:` line of compact JSON (or text as is)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()
