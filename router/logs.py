"""Logging: every record of the `router` logger has the policy's secrets blanked out.

Routers register their policy's secret values (API keys, AWS credentials, the Redis URL's
password) here; a filter on the `router` logger replaces them with `***` in the message, its
arguments and the traceback text. `JsonFormatter` writes one JSON object per line for log
pipelines: `logging.getLogger("router").handlers[0].setFormatter(JsonFormatter())`.

`hide` is the one way a secret is blanked out anywhere: in logs, in provider and store errors,
in a policy's located issues.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Iterable

__all__ = ["HIDDEN", "JsonFormatter", "SecretFilter", "hide", "register_secrets", "scrub", "url_secrets"]

HIDDEN = "***"
"""What a secret is shown as."""

_MIN_SECRET = 12  # real keys are longer; shorter values (placeholders) would blank out ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    with _lock:
        _secrets.update(value for value in values if len(value) >= _MIN_SECRET)


def hide(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` as `***`, longest first (a secret holding another goes whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, HIDDEN)
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url` as written and percent-decoded: what a message quoting it must not show."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return ()
    return tuple(dict.fromkeys(s for s in (password, urllib.parse.unquote(password or "")) if s))


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    return hide(text, _secrets) if _secrets else text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


logging.getLogger("router").addFilter(SecretFilter())
