"""Per-request control: what one call may change of its route (candidates, deadline, retries, cost cap,
stream recovery) and the metadata its route's rules read.

`Router.complete()` and `stream()` take these as keywords; `Control.parse` reads them from JSON-ish or
header-ish values (a gateway's `router` object or `x-router-*` headers) and `Control.keywords()` gives
them back as those keywords. A value out of range raises `InvalidRequest` before any call; whether the
targets belong to the route is checked by the router, which knows the policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from router.errors import InvalidRequest
from router.options import is_number
from router.policy.model import StreamRecovery, parse_duration

__all__ = ["Control"]

_RECOVERIES: tuple[str, ...] = get_args(StreamRecovery)
MAX_TARGETS = 64
"""The most targets one call may name (each `provider:model` among them is a client's breaker and limiter)."""
MAX_ATTEMPTS = 100
"""The most calls per target one call may ask for, as a route's `retry.attempts`."""


@dataclass(frozen=True, slots=True)
class Control:
    """One request's changes to its route; None leaves the route's own setting.

    `targets`: a subset or reorder of the route's targets (or of its rules' targets), or
    `provider:model` addresses of the policy's providers. `deadline`: seconds, shortens the route's
    total. `attempts`: calls per target, the first included. `max_cost`: USD, the tighter of the
    route's and this. `metadata`: for the route's rules and the event hooks, never sent upstream.
    """

    targets: Sequence[str] | None = None  # kept as a tuple
    deadline: float | None = None
    attempts: int | None = None
    max_cost: float | None = None
    stream_recovery: StreamRecovery | None = None
    metadata: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)  # a dict: unhashable

    def __post_init__(self) -> None:
        if self.targets is not None:
            targets = self.targets
            if isinstance(targets, str) or not isinstance(targets, Sequence):
                raise InvalidRequest("targets must be a list of target names or provider:model addresses")
            if not all(isinstance(t, str) and t for t in targets):
                raise InvalidRequest("targets must be a list of target names or provider:model addresses")
            if not 1 <= len(targets) <= MAX_TARGETS:
                raise InvalidRequest(f"targets must name at least one target and at most {MAX_TARGETS}")
            object.__setattr__(self, "targets", tuple(self.targets))
        if self.deadline is not None and not (is_number(self.deadline) and self.deadline > 0):
            raise InvalidRequest("deadline must be a number of seconds above 0")
        if self.attempts is not None and (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or not 1 <= self.attempts <= MAX_ATTEMPTS
        ):
            raise InvalidRequest(f"attempts must be a whole number from 1 to {MAX_ATTEMPTS}")
        if self.max_cost is not None and not (is_number(self.max_cost) and self.max_cost >= 0):
            raise InvalidRequest("max_cost must be a number of USD, 0 or more")
        if self.stream_recovery is not None and self.stream_recovery not in _RECOVERIES:
            raise InvalidRequest(
                f"stream_recovery must be one of {', '.join(_RECOVERIES)}, got {_shown(self.stream_recovery)}"
            )
        if self.metadata is not None and not isinstance(self.metadata, Mapping):
            raise InvalidRequest("metadata must be a mapping")

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> Control:
        """Control from JSON-ish or header-ish values: `targets` as a list or "a,b"; numbers as numbers
        or text; `deadline` as seconds or a duration ("2s", "500ms"); `metadata` as a mapping or
        "k=v,k2=v2". Names may use `-` for `_` (`max-cost`); an unknown name is an `InvalidRequest`."""
        given: dict[str, Any] = {}
        for name, value in fields.items():
            key = str(name).strip().lower().replace("-", "_")
            reader = _READERS.get(key)
            if reader is None:
                raise InvalidRequest(f"unknown control field {_shown(name)}; fields: {', '.join(_READERS)}")
            given[key] = None if value is None else reader(value)
        return cls(**given)

    def keywords(self) -> dict[str, Any]:
        """The keyword arguments of `Router.complete()` / `stream()` this control sets."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is not None
        }


def _targets(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if isinstance(value, Sequence):
        return tuple(value)
    raise InvalidRequest("targets must be a list of names or a text of names separated by commas")


def _number(name: str, whole: bool = False) -> Any:
    def read(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return int(value) if whole else float(value)
            except ValueError:
                kind = "a whole number" if whole else "a number"
                raise InvalidRequest(f"{name} must be {kind}, got {_shown(value)}") from None
        return value

    return read


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return parse_duration(value)
        except ValueError as error:
            raise InvalidRequest(f"deadline: {error}") from None
    return value


def _metadata(value: Any) -> Any:
    if isinstance(value, str):
        pairs = [pair.partition("=") for pair in value.split(",") if pair.strip()]
        if any(not sep or not key.strip() for key, sep, _ in pairs):
            raise InvalidRequest(
                "metadata must be a mapping or a text of key=value pairs separated by commas"
            )
        return {key.strip(): item.strip() for key, _, item in pairs}
    return value


def _text(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


_READERS = {
    "targets": _targets,
    "deadline": _duration,
    "attempts": _number("attempts", whole=True),
    "max_cost": _number("max_cost"),
    "stream_recovery": _text,
    "metadata": _metadata,
}


def _shown(value: Any) -> str:
    """A caller's value in a message, cut short: it may come from a header of any length."""
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
