"""What a call may ask of the provider: a checked set of options, and one mapping passed through as is.

`Router.complete()` and `Router.stream()` take `max_tokens`, `temperature`, `metadata` and `deadline`
themselves; beyond those, only the `PROVIDER_OPTIONS` (in OpenAI's chat shape; other wires translate
what they can) and `extra_body`, whose keys go into the request body as given. A name the router owns
(`model`, `stream`, `timeout`, `fallbacks`, ...) raises `TypeError` naming the parameter or the policy
setting that does it, before any call is made: a caller's mistake never reaches a provider, so it never
counts against a target's breaker.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PROVIDER_OPTIONS", "checked_call", "is_number"]

PROVIDER_OPTIONS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stop",
        "response_format",
        "top_p",
        "seed",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "prediction",
        "modalities",
        "audio",
        "web_search_options",
        "store",
    }
)
"""The provider options a call may give, by their OpenAI names."""

_PARAMETERS = (
    "max_tokens",
    "temperature",
    "metadata",
    "deadline",
    "targets",
    "attempts",
    "max_cost",
    "stream_recovery",
    "extra_body",
)
_POLICY = "the policy's"
_OWNED = {
    "model": "the model is the target's: name a route or a target, or address one model as 'provider:model'",
    "stream": "for a stream, call router.stream()",
    "stream_options": "the router asks for the usage of a stream itself",
    "timeout": "use deadline= (seconds for the whole request, retries and failovers included)",
    "request_timeout": "use deadline= (seconds for the whole request, retries and failovers included)",
    "fallbacks": f"the fallbacks are {_POLICY} routes.<route>.targets, in order; for one call, targets=[...]",
    "context_window_fallbacks": f"the fallbacks are the route's targets: {_POLICY} routes.<route>.targets",
    "max_retries": f"retries are {_POLICY} routes.<route>.retry; for one call, use attempts=",
    "num_retries": f"retries are {_POLICY} routes.<route>.retry; for one call, use attempts=",
    "n": "the router returns one answer per call",
    "best_of": "the router returns one answer per call",
    "max_completion_tokens": "use max_tokens=",
    "messages": "the messages are the second argument",
    "api_key": f"keys are the provider's: {_POLICY} providers.<name>.api_key",
    "api_base": f"addresses are the provider's: {_POLICY} providers.<name>.base_url",
    "base_url": f"addresses are the provider's: {_POLICY} providers.<name>.base_url",
    "api_version": f"API versions are the provider's: {_POLICY} providers.<name>.api_version",
    "organization": f"the organization is the provider's: {_POLICY} providers.<name>.organization",
    "extra_headers": f"headers are the provider's: {_POLICY} providers.<name>.headers",
    "headers": f"headers are the provider's: {_POLICY} providers.<name>.headers",
    "extra_query": "the router sends no query parameters of the caller's",
}


def checked_call(
    method: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
    temperature: float | None,
    metadata: Mapping[str, Any] | None,
    deadline: float | None,
    options: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The options of a call of `method` (`complete`, `stream`) after checking every argument; the
    pass-through mapping rides along as `extra_body`. Raises `TypeError` or `ValueError` naming the
    argument at fault."""
    _check_messages(method, messages)
    _check_arguments(method, max_tokens, temperature, metadata, deadline)
    for name in options:
        if name not in PROVIDER_OPTIONS:
            raise TypeError(_unexpected(method, name))
    checked = dict(options)
    if extra_body is not None:
        checked["extra_body"] = _checked_extra_body(method, extra_body)
    for name, value in checked.items():
        # Sent as JSON: a value that is not would fail inside the adapter, as if the target had.
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise TypeError(f"{method}() {name}: not a JSON value") from None
    return checked


def _check_messages(method: str, messages: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError(f"{method}() messages must be a list of messages, got {type(messages).__name__}")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(f"{method}() messages[{index}] must be a mapping with a 'role'")


def _check_arguments(
    method: str,
    max_tokens: int | None,
    temperature: float | None,
    metadata: Mapping[str, Any] | None,
    deadline: float | None,
) -> None:
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise TypeError(f"{method}() max_tokens must be a whole number, got {type(max_tokens).__name__}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"{method}() max_tokens must be at least 1")
    if temperature is not None and not is_number(temperature):
        raise TypeError(f"{method}() temperature must be a finite number")
    if deadline is not None and not (is_number(deadline) and deadline > 0):
        raise ValueError(f"{method}() deadline must be a number of seconds above 0")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"{method}() metadata must be a mapping")


def _checked_extra_body(method: str, extra_body: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(extra_body, Mapping):
        raise TypeError(f"{method}() extra_body must be a mapping of body fields")
    for name in extra_body:
        if name in _OWNED or name in _PARAMETERS:
            raise TypeError(f"{method}() extra_body may not set {name!r}: {_hint(name)}")
    return dict(extra_body)


def _unexpected(method: str, name: str) -> str:
    if name in _OWNED:
        return f"{method}() got an unexpected keyword argument {name!r}: {_hint(name)}"
    close = difflib.get_close_matches(name, [*sorted(PROVIDER_OPTIONS), *_PARAMETERS], n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"{method}() got an unexpected keyword argument {name!r}{guess} (provider options: "
        f"{', '.join(sorted(PROVIDER_OPTIONS))}; other body fields go in extra_body={{{name!r}: ...}})"
    )


def _hint(name: str) -> str:
    return _OWNED.get(name, f"use the {name}= argument")


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
