"""A chaos run's figures, computed from its `Recording` alone (and so checkable by hand).

Definitions (times in seconds from the start of the load):

- a request is *lost* when nobody answered it whole: it raised, its answer was not the whole
  reply (`wrong_answer`), or it was still unanswered when the run ended (`unfinished`);
- latency percentiles are nearest-rank, over the requests that succeeded;
- an *incident* is a window in which every call to the primary fails (from the scenario);
  *time to detect* is from its start to the start of the first request, begun within the
  window, that sent nothing to the primary; *time to fail back* is from its end to the start
  of the first request, begun after it, that the primary answered (measured only when the
  incident was detected). The headline figures are the worst over the incidents;
- *upstream calls* are what the fake upstream received, by model and by the fault it injected.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from router.chaos.recording import Recording, TransitionEvent
from router.estimates import percentile

__all__ = ["IncidentReport", "Latency", "Report", "Timeline", "build_report", "percentile"]


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds, over the requests that succeeded."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class IncidentReport:
    start: float
    end: float
    detected_at: float | None
    time_to_detect: float | None
    failed_back_at: float | None
    time_to_fail_back: float | None
    primary_calls: int  # calls the primary's model received within the window


@dataclass(frozen=True, slots=True)
class Timeline:
    """Counts per bin of `bin` seconds, the first starting at 0: requests by their start, by who
    answered them (`served`, plus `lost`), and upstream calls by model."""

    bin: float
    served: dict[str, list[int]]
    lost: list[int]
    upstream: dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class Report:
    contender: str
    scenario: str
    duration: float
    workers: int
    requests: int
    succeeded: int
    lost: int
    success_rate: float
    throughput: float  # requests per second of load
    errors: dict[str, int]  # how the lost requests ended
    stream_recoveries: dict[str, int]  # answered streams that outlived a break: continued, restarted
    attempts: dict[str, dict[str, int]]  # target -> attempt outcome -> count, from the trails
    latency: Latency | None
    served_by: dict[str, int]
    upstream_calls: dict[str, int]  # model -> calls received
    upstream_faults: dict[str, dict[str, int]]  # model -> injected fault (or "ok") -> calls
    primary: str
    primary_model: str
    incidents: tuple[IncidentReport, ...]
    time_to_detect: float | None
    time_to_fail_back: float | None
    undetected: int  # incidents during which the primary was never skipped
    primary_calls_during_incidents: int
    cost_usd: float
    transitions: tuple[TransitionEvent, ...]
    timeline: Timeline
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: seconds as `_s` fields, latency in milliseconds."""
        data = asdict(self)
        latency = data.pop("latency")
        data["latency_ms"] = None if latency is None else {k: round(v * 1000, 3) for k, v in latency.items()}
        for key in ("duration", "time_to_detect", "time_to_fail_back"):
            data[f"{key}_s"] = _round(data.pop(key))
        data["incidents"] = [
            {f"{k}_s" if k != "primary_calls" else k: _round(v) for k, v in i.items()}
            for i in data["incidents"]
        ]
        data["transitions"] = [{**t, "at": _round(t["at"])} for t in data["transitions"]]
        data["timeline"]["bin_s"] = data["timeline"].pop("bin")
        data["success_rate"] = round(self.success_rate, 6)
        data["throughput"] = round(self.throughput, 3)
        data["cost_usd"] = round(self.cost_usd, 9)
        return data


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def build_report(recording: Recording) -> Report:
    requests = sorted(recording.requests, key=lambda event: event.start)
    answered = [event for event in requests if event.ok]
    total = len(requests)
    attempts = _counts((target, outcome) for event in requests for target, outcome in event.attempts)
    upstream_faults = _counts((call.model, call.fault) for call in recording.upstream)
    incidents = tuple(_incident(recording, requests, start, end) for start, end in _windows(recording))
    return Report(
        contender=recording.contender,
        scenario=recording.scenario,
        duration=recording.duration,
        workers=recording.workers,
        requests=total,
        succeeded=len(answered),
        lost=total - len(answered),
        success_rate=len(answered) / total if total else 1.0,
        throughput=total / recording.duration if recording.duration else 0.0,
        errors=dict(sorted(Counter(str(event.error) for event in requests if not event.ok).items())),
        stream_recoveries=dict(sorted(Counter(e.recovery for e in answered if e.recovery).items())),
        attempts=attempts,
        latency=_latency([event.latency for event in answered]),
        served_by=dict(sorted(Counter(str(event.target) for event in answered).items())),
        upstream_calls={model: sum(counts.values()) for model, counts in upstream_faults.items()},
        upstream_faults=upstream_faults,
        primary=recording.primary,
        primary_model=recording.models.get(recording.primary, ""),
        incidents=incidents,
        time_to_detect=_longest(i.time_to_detect for i in incidents),
        time_to_fail_back=_longest(i.time_to_fail_back for i in incidents),
        undetected=sum(1 for i in incidents if i.detected_at is None),
        primary_calls_during_incidents=sum(i.primary_calls for i in incidents),
        cost_usd=sum(event.cost_usd for event in answered),
        transitions=tuple(sorted(recording.transitions, key=lambda t: (t.at, t.worker))),
        timeline=_timeline(recording),
        notes=tuple(recording.notes),
    )


def _latency(latencies: Sequence[float]) -> Latency | None:
    if not latencies:
        return None
    return Latency(
        percentile(latencies, 0.50),
        percentile(latencies, 0.90),
        percentile(latencies, 0.99),
        max(latencies),
        sum(latencies) / len(latencies),
    )


def _counts(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """How often each value came with each key, keys and values in order."""
    counts: dict[str, Counter[str]] = {}
    for key, value in pairs:
        counts.setdefault(key, Counter())[value] += 1
    return {key: dict(sorted(counted.items())) for key, counted in sorted(counts.items())}


def _longest(times: Iterable[float | None]) -> float | None:
    """The longest of the times known (None: none is)."""
    known = [time for time in times if time is not None]
    return max(known) if known else None


def _windows(recording: Recording) -> list[tuple[float, float]]:
    return [(window.start, window.end) for window in recording.incidents]


def _incident(recording: Recording, requests: Sequence[Any], start: float, end: float) -> IncidentReport:
    primary = recording.primary
    model = recording.models.get(primary, "")
    skipped = next((e.start for e in requests if start <= e.start < end and not e.called(primary)), None)
    back = None
    if skipped is not None:
        back = next((e.start for e in requests if e.start >= end and e.target == primary), None)
    calls = sum(1 for call in recording.upstream if call.model == model and start <= call.at < end)
    return IncidentReport(
        start=start,
        end=end,
        detected_at=skipped,
        time_to_detect=None if skipped is None else skipped - start,
        failed_back_at=back,
        time_to_fail_back=None if back is None else back - end,
        primary_calls=calls,
    )


def _timeline(recording: Recording) -> Timeline:
    width = 0.5 if recording.duration <= 30 else 1.0
    last = max(
        [recording.duration, *(e.start for e in recording.requests), *(c.at for c in recording.upstream)]
    )
    count = max(1, math.ceil(last / width))

    def index(at: float) -> int:
        return min(count - 1, max(0, int(at // width)))

    served = {target: [0] * count for target in recording.models}
    lost = [0] * count
    upstream = {model: [0] * count for model in dict.fromkeys(recording.models.values())}
    for event in recording.requests:
        if event.target is None:
            lost[index(event.start)] += 1
        else:
            served.setdefault(event.target, [0] * count)[index(event.start)] += 1
    for call in recording.upstream:
        upstream.setdefault(call.model, [0] * count)[index(call.at)] += 1
    return Timeline(width, served, lost, upstream)
