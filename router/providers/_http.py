"""Pieces every HTTP adapter needs: Retry-After parsing, safe error summaries, server-sent events,
and JSON answers bounded in what parsing them may cost."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from router.logs import hide, url_secrets
from router.policy.model import ProviderSpec

__all__ = [
    "MAX_JSON_VALUES",
    "EventDecoder",
    "ServerSentEvent",
    "TooManyValues",
    "check_json_body",
    "check_json_event",
    "redact",
    "retry_after",
    "secrets_of",
    "server_sent_event_batches",
    "server_sent_events",
]

_MAX_DETAIL = 300

MAX_JSON_VALUES = 100_000
"""The most values (object members, array items, containers) one answer's JSON may hold.

`json.loads` is C code that holds the GIL from start to end, so parsing in a thread would stall
the event loop as long as parsing on it; its time grows with the values (up to about 0.15 us each),
far less with the bytes of text. A chat answer holds a few dozen values, and this many parse in
about 15 ms. More (an upstream gone wrong or hostile, or logprobs with many top_logprobs over a
long answer, which the router does not return) are refused unparsed: 12 MiB of 1.6 million small
values would hold the loop for half a second.
"""

_COUNT_ABOVE = 64 * 1024  # a body this small holds too few values to be worth counting
_SLICE = 256 * 1024  # a long body is counted a slice at a time, the loop running between slices
_ALL_BUT_STRUCTURE = bytes(sorted(set(range(256)) - set(b",:[{")))
_BACKSLASH = ord("\\")
_CR = ord("\r")
_LINE_ENDS = b"\r\n"


class TooManyValues(ValueError):
    """An answer whose JSON holds more than `MAX_JSON_VALUES` values, refused before parsing."""

    def __init__(self) -> None:
        super().__init__(f"the answer holds more than {MAX_JSON_VALUES:,} JSON values")


async def check_json_body(body: bytes) -> None:
    """Raise `TooManyValues` when `body` holds more JSON values than `MAX_JSON_VALUES`.

    Commas, colons and opening brackets stand for the values. Counted across the whole body they
    bound them from above; when that bound is passed (by text full of punctuation, say) the ones
    outside strings are counted, until the limit is passed. Both go 256 KiB at a time, with the
    loop running in between (a slice costs it at most a few milliseconds).
    """
    if len(body) <= _COUNT_ABOVE:
        return
    upper = 0
    for start in range(0, len(body), _SLICE):
        upper += _structure(body[start : start + _SLICE])
        await asyncio.sleep(0)
    if upper <= MAX_JSON_VALUES:
        return
    count, in_string, start = 0, False, 0
    while start < len(body):
        end = start + _SLICE
        while end < len(body) and body[end - 1] == _BACKSLASH:
            end += 1  # no escape sequence spans two slices
        # Without escaped backslashes and quotes, every quote left opens or closes a string.
        piece = body[start:end].replace(b"\\\\", b"").replace(b'\\"', b"")
        parts = piece.split(b'"')
        count += _structure(b"".join(parts[1 if in_string else 0 :: 2]))
        if count > MAX_JSON_VALUES:
            raise TooManyValues()
        in_string ^= len(parts) % 2 == 0
        start = end
        await asyncio.sleep(0)


def check_json_event(data: str | bytes) -> None:
    """`check_json_body` for one stream event, judged by the bound from above alone: a legitimate
    event is a few tokens, so one that may pass the limit is refused without a closer look."""
    if len(data) > _COUNT_ABOVE:
        raw = data.encode() if isinstance(data, str) else data
        if _structure(raw) > MAX_JSON_VALUES:
            raise TooManyValues()


def _structure(data: bytes) -> int:
    """The commas, colons and opening brackets in `data`, strings included."""
    return len(data.translate(None, _ALL_BUT_STRUCTURE))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `Retry-After` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def secrets_of(spec: ProviderSpec, key: str | None) -> tuple[str, ...]:
    """What an adapter's errors must never repeat (an upstream may echo a request back): the key,
    every header value, the password in the base URL."""
    passwords = url_secrets(spec.base_url) if spec.base_url else ()
    values = (key, *spec.headers.values(), *passwords)
    return tuple(str(value) for value in values if value)


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event of a `text/event-stream`: its `event:` name ("" if none) and its `data:` lines, joined."""

    name: str
    data: str


class EventDecoder:
    """The event-stream grammar: a blank line ends each event; comments (`:` keep-alives) and events
    without data are skipped. Fed lines, or a body's bytes a piece at a time as they arrive."""

    __slots__ = ("_after_cr", "_data", "_name", "_unfinished")

    def __init__(self) -> None:
        self._name = ""
        self._data: list[str] = []
        self._unfinished: list[bytes] = []  # the pieces of a line not finished yet
        self._after_cr = False  # that piece ended in `\r`: a `\n` starting the next ends no line

    def lines(self, lines: Iterable[str]) -> list[ServerSentEvent]:
        """The events the lines end."""
        events = []
        for line in lines:
            if line[:6] == "data: ":  # most lines: the general rule's result, in one step
                self._data.append(line[6:])
            elif not line:
                data = self._data
                if data:
                    events.append(ServerSentEvent(self._name, data[0] if len(data) == 1 else "\n".join(data)))
                    self._data = []
                self._name = ""
            elif line[0] != ":":
                field, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if field == "data":
                    self._data.append(value)
                elif field == "event":
                    self._name = value
        return events

    def feed(self, piece: bytes) -> list[ServerSentEvent]:
        """The events a piece of the body ends: cut into lines at `\r\n`, `\n` or `\r` (as the format
        says, and nothing else: not at U+2028) and read at once, with no step per line between them."""
        if self._after_cr and piece[:1] == b"\n":
            piece = piece[1:]
        if not piece:
            return []
        self._after_cr = piece[-1] == _CR
        unfinished = self._unfinished
        if b"\n" not in piece and b"\r" not in piece:
            unfinished.append(piece)  # inside a long line: kept as it came, joined once it ends
            return []
        if unfinished:
            unfinished.append(piece)
            piece = b"".join(unfinished)
        lines = piece.splitlines()
        self._unfinished = [lines.pop()] if piece[-1] not in _LINE_ENDS else []
        return self.lines([line.decode("utf-8", "replace") for line in lines])

    def end(self) -> list[ServerSentEvent]:
        """What the stream's end completes: its last line, and an event it ends before closing."""
        unfinished, self._unfinished = b"".join(self._unfinished), []
        events = self.lines((unfinished.decode("utf-8", "replace"),)) if unfinished else []
        return [*events, *self.lines(("",))] if self._data else events


async def server_sent_event_batches(body: AsyncIterable[bytes]) -> AsyncIterator[list[ServerSentEvent]]:
    """The events of a stream's body, in the batches each piece of it completes (see `EventDecoder`);
    one step per piece, not per event."""
    events = EventDecoder()
    async for piece in body:
        yield events.feed(piece)
    yield events.end()


async def server_sent_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """The events in a stream's lines (see `EventDecoder`). An event the stream ends before closing
    is delivered too."""
    events = EventDecoder()
    async for line in lines:
        for event in events.lines((line,)):
            yield event
    for event in events.end():
        yield event


def redact(text: str, secrets: Iterable[str]) -> str:
    """Trim a provider's error text and blank out any secret it echoes back."""
    text = hide(text, secrets)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
