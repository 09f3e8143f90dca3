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
    "ServerSentEvent",
    "TooManyValues",
    "check_json_body",
    "check_json_event",
    "redact",
    "retry_after",
    "secrets_of",
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


async def server_sent_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """The events in a stream's lines: a blank line ends each; comments (`:` keep-alives) and
    events without data are skipped. An event the stream ends before closing is delivered too."""
    name = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(name, "\n".join(data))
            name, data = "", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:
        yield ServerSentEvent(name, "\n".join(data))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Trim a provider's error text and blank out any secret it echoes back."""
    text = hide(text, secrets)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
