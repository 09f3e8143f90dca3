"""What a completion returns: the answer, who gave it, what it cost, and how it got there."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from router.errors import ErrorKind

if TYPE_CHECKING:
    from router.resilience.breaker import BreakerState
    from router.resilience.runtime import Health

__all__ = [
    "SKIPS",
    "Attempt",
    "Completion",
    "ModelEntry",
    "Outcome",
    "StreamRestart",
    "TargetStatus",
    "ToolCall",
    "Usage",
]


class Outcome(StrEnum):
    """How an attempt ended when not by a provider error (an attempt's other outcomes are `ErrorKind`s)."""

    OK = "ok"
    LIMITED = "limited"  # the limiter could not admit the call before the deadline
    BREAKER_OPEN = "breaker_open"  # skipped without a call
    CANCELLED = "cancelled"  # lost a hedge race
    OVER_BUDGET = "over_budget"  # the estimate exceeds the route's max_cost, or a budget is spent
    DEADLINE = "deadline"  # no time left to try it
    DRAINED = "drained"  # taken out of service by an operator
    UNHEALTHY = "unhealthy"  # failing its health probes
    RECOVERING = "recovering"  # back, but the route's failback rule wants more proof first
    UNSUPPORTED = "unsupported"  # lacks a capability the request needs (streaming, tools, prefill)
    WINDOW_TOO_SMALL = "window_too_small"  # the prompt does not fit, or a larger window already refused it


# The outcomes of a target skipped: nothing was sent to it.
SKIPS = frozenset(
    {
        Outcome.BREAKER_OPEN,
        Outcome.LIMITED,
        Outcome.OVER_BUDGET,
        Outcome.DEADLINE,
        Outcome.DRAINED,
        Outcome.UNHEALTHY,
        Outcome.RECOVERING,
        Outcome.UNSUPPORTED,
        Outcome.WINDOW_TOO_SMALL,
    }
)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asks the caller to run; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of a request's trail: a call to a target, or a target skipped and why."""

    target: str
    provider: str
    model: str
    outcome: Outcome | ErrorKind
    latency_s: float = 0.0
    error: str | None = None
    status: int | None = None

    def __str__(self) -> str:
        detail = f" - {self.error}" if self.error else ""
        where = f"{self.target} ({self.provider}/{self.model})"
        return f"{where}: {self.outcome} in {self.latency_s * 1000:.1f} ms{detail}"


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer and its provenance."""

    text: str
    target: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float
    latency_s: float
    attempts: tuple[Attempt, ...]
    finish_reason: str | None = None
    warnings: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamRestart:
    """Yielded by `stream()` when the answer starts over on another target: clear what was shown.

    The stream of `broken` failed after output began and no candidate could continue its text;
    `replaced` is the text of the answer the caller has received so far, which the deltas after
    this event (a whole new answer from `target`) replace. `reason` says how the stream broke.
    """

    broken: str
    replaced: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target as the fleet sees it (`router status`)."""

    target: str
    provider: str
    model: str
    breaker: BreakerState
    generation: int
    health: Health
    last_probe_ago: float | None
    probe_detail: str
    drained: bool
    in_flight: int
    # What the fleet's workers hold of each bucket the target's calls spend: "rpm", "tpm",
    # "budget:<name>" (its leases outstanding, see the README's bound on overspending).
    leases: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A name a request may give as its route (`Router.models()`, a gateway's model list): a route, an
    alias of one, or a target's `provider:model` address; `targets` are where its traffic may go."""

    id: str
    kind: Literal["route", "alias", "target"]
    targets: tuple[str, ...]
