"""What a chaos run records: every request, every breaker transition, every upstream call.

Times are seconds from the start of the load (`origin`, a monotonic time every process of the
run shares). The report (`router.chaos.report`) is arithmetic over a `Recording` and nothing
else, so a recording built by hand checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.chaos.scenario import Window
from router.results import SKIPS

__all__ = [
    "Recording",
    "RequestEvent",
    "StatusEvent",
    "TransitionEvent",
    "UpstreamCall",
]


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One request of the load, start to end.

    `target` answered it (None: lost, and `error` says how); `attempts` is its trail as
    (target, outcome) pairs, skips included (a contender that cannot tell skips lists calls only).
    """

    worker: int
    start: float
    end: float
    target: str | None
    error: str | None = None
    cost_usd: float = 0.0
    attempts: tuple[tuple[str, str], ...] = ()
    recovery: str | None = None  # a streamed answer that outlived a broken stream: "continued", "restarted"

    @property
    def ok(self) -> bool:
        return self.target is not None

    @property
    def latency(self) -> float:
        return self.end - self.start

    def called(self, target: str) -> bool:
        """Did this request send anything to `target`?"""
        return any(name == target and outcome not in SKIPS for name, outcome in self.attempts)


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """A breaker transition as one worker saw it."""

    worker: int
    at: float
    target: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One worker's view of its targets (breaker, health) at `at`: for live displays."""

    worker: int
    at: float
    breakers: tuple[tuple[str, str], ...]
    health: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """A chat request the fake upstream received; `fault` is the fault injected, or "ok"."""

    at: float
    model: str
    fault: str
    status: int | None


@dataclass(slots=True)
class Recording:
    """One contender's run of one scenario.

    `models` maps each target of the route to its upstream model; `incidents` are the windows
    in which the primary was down.
    """

    contender: str
    scenario: str
    duration: float
    workers: int
    primary: str
    models: dict[str, str]
    incidents: tuple[Window, ...] = ()
    requests: list[RequestEvent] = field(default_factory=list)
    transitions: list[TransitionEvent] = field(default_factory=list)
    upstream: list[UpstreamCall] = field(default_factory=list)
    statuses: dict[int, StatusEvent] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # A `Recording` is the sink a load writes to (directly, or through a worker's queue).

    def request(self, event: RequestEvent) -> None:
        self.requests.append(event)

    def transition(self, event: TransitionEvent) -> None:
        self.transitions.append(event)

    def status(self, event: StatusEvent) -> None:
        self.statuses[event.worker] = event
