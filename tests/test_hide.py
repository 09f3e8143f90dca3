"""One scrubber: every secret the router could show is blanked out the same way."""

from __future__ import annotations

from router import logs


def test_hide_blanks_out_the_longest_secret_first() -> None:
    assert logs.hide("key sk-abc-123 and sk-abc", ["sk-abc", "sk-abc-123", ""]) == "key *** and ***"


def test_a_url_password_is_a_secret_as_written_and_decoded() -> None:
    assert logs.url_secrets("redis://:p%40ss@host:6379/0") == ("p%40ss", "p@ss")
    assert logs.url_secrets("redis://host:6379/0") == ()
    assert logs.url_secrets("http://[::1") == ()
