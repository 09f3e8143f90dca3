"""The one server-sent-events decoder the OpenAI and Anthropic adapters read streams with."""

from __future__ import annotations

from collections.abc import AsyncIterator

from router.providers._http import ServerSentEvent, server_sent_events


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
