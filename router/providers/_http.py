"""Pieces every HTTP adapter needs: Retry-After parsing and safe error summaries."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping

from router.logs import hide, url_secrets
from router.policy.model import ProviderSpec

__all__ = ["redact", "retry_after", "secrets_of"]

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


def secrets_of(spec: ProviderSpec, key: str | None) -> tuple[str, ...]:
    """What an adapter's errors must never repeat (an upstream may echo a request back): the key,
    every header value, the password in the base URL."""
    passwords = url_secrets(spec.base_url) if spec.base_url else ()
    values = (key, *spec.headers.values(), *passwords)
    return tuple(str(value) for value in values if value)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Trim a provider's error text and blank out any secret it echoes back."""
    text = hide(text, secrets)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
