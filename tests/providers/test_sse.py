"""The one server-sent-events decoder the OpenAI and Anthropic adapters read, over lines or bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from router.providers._http import EventDecoder, ServerSentEvent, server_sent_events


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _events(*lines: str) -> list[ServerSentEvent]:
    return [event async for event in server_sent_events(_lines(*lines))]


async def test_a_blank_line_ends_an_event_and_data_lines_join() -> None:
    events = await _events(
        "event: message_start", "data: {", "data:  }", "", ": keep-alive", "", "data: [DONE]", ""
    )
    assert events == [ServerSentEvent("message_start", "{\n }"), ServerSentEvent("", "[DONE]")]


async def test_an_event_without_data_is_skipped_and_one_cut_short_is_delivered() -> None:
    events = await _events("event: ping", "", "id: 3", "retry: 10", "", "data: last")
    assert events == [ServerSentEvent("", "last")]


STREAM = (
    b"event: message_start\r\ndata: {\r\ndata:  \xc3\xa9t\xc3\xa9 }\r\n\r\n"
    b": keep-alive\n\ndata: a\rdata: b\r\r"
    b"id: 3\nretry: 10\n\n"
    b'data: {"text": "line\\u2028separator \xe2\x80\xa8 raw"}\n\n'
    b"data: last"
)
EXPECTED = [
    ServerSentEvent("message_start", "{\n \u00e9t\u00e9 }"),
    ServerSentEvent("", "a\nb"),
    ServerSentEvent("", '{"text": "line\\u2028separator \u2028 raw"}'),  # U+2028 does not end a line
    ServerSentEvent("", "last"),
]


def _events_in(body: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    decoder = EventDecoder()
    events, start = [], 0
    for cut in [*cuts, len(body)]:
        events += decoder.feed(body[start:cut])
        start = cut
    return events + decoder.end()


def test_the_bytes_decoder_reads_events_whole_or_in_pieces() -> None:
    assert _events_in(STREAM, []) == EXPECTED
    assert _events_in(STREAM, list(range(1, len(STREAM)))) == EXPECTED  # a byte at a time


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_wherever_the_pieces_are_cut_the_events_are_the_same(cuts: list[int]) -> None:
    assert _events_in(STREAM, sorted(cuts)) == EXPECTED


def test_a_crlf_cut_between_pieces_is_one_line_end() -> None:
    # A `\n` read as a second line end would end the event before its second data line.
    body = b"data: one\r\ndata: two\r\n\r\n"
    cut = body.index(b"\n")
    assert _events_in(body, [cut]) == [ServerSentEvent("", "one\ntwo")]
