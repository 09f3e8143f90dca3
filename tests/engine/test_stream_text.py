"""A stream's text is joined once: a long answer is not held again by each reader (issue 11)."""

from __future__ import annotations

from typing import Any

from router._stream import OpenStream


def test_the_text_is_joined_once_and_replaces_its_pieces() -> None:
    nothing: Any = None  # none is used here
    opened = OpenStream(
        nothing, nothing, started=0.0, deadline=1.0, input_tokens=1, warnings=[], watch=nothing
    )
    assert opened.text == ""
    opened.received += ["one ", "two ", "three"]

    text = opened.text
    assert text == "one two three"
    assert opened.received == [text]  # the pieces gave way to the text
    assert opened.text is text  # every later reader (the break, the restart, the Completion) shares it
    opened.received.append(" four")  # a stream read on after a look at its text
    assert opened.text == "one two three four"
