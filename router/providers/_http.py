"""Pieces every HTTP adapter needs: Retry-After parsing and safe error summaries."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping

__all__ = ["redact", "retry_after"]

_MAX_DETAIL = 300


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


def redact(text: str, secrets: Iterable[str]) -> str:
    """Trim a provider's error text and blank out any secret it echoes back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
