"""The report's arithmetic on a recorded run built by hand: every figure, exactly.

Times are multiples of 1/16, so every sum and difference below is exact in binary.
"""

from __future__ import annotations

import json

import pytest

from router.chaos import Recording, RequestEvent, TransitionEvent, UpstreamCall, Window, build_report
from router.chaos.report import IncidentReport, Latency, percentile

P, S = "primary", "secondary"


def request(
    start: float, end: float, target: str | None, *attempts: tuple[str, str], **kw: object
) -> RequestEvent:
    return RequestEvent(0, start, end, target, attempts=attempts, **kw)  # type: ignore[arg-type]


@pytest.fixture
def recording() -> Recording:
    return Recording(
        contender="router",
        scenario="hand-made",
        duration=6.0,
        workers=1,
        primary=P,
        models={P: "gpt-4o", S: "claude"},
        incidents=(Window(2.0, 4.0), Window(5.0, 5.75)),
        requests=[
            request(0.5, 0.625, P, (P, "ok"), cost_usd=0.125),
            request(1.0, 1.25, P, (P, "ok"), cost_usd=0.125),
            # The first outage: this one still calls the primary...
            request(2.125, 2.5, S, (P, "server_error"), (S, "ok"), cost_usd=0.03125),
            # ...this one is the first to skip it (detected 0.5 s in)...
            request(2.5, 2.625, S, (P, "breaker_open"), (S, "ok"), cost_usd=0.03125),
            request(3.0, 3.25, None, (P, "breaker_open"), (S, "server_error"), error="all_targets_failed"),
            # ...and after it ends, the second request is the first the primary answers (0.625 s).
            request(4.25, 4.375, S, (P, "breaker_open"), (S, "ok"), cost_usd=0.03125),
            request(4.625, 4.75, P, (P, "ok"), cost_usd=0.125),
            # The second outage: nothing skips the primary, so it is never detected.
            request(5.0, 5.5, None, (P, "timeout"), error="all_targets_failed"),
            request(5.875, 6.0, None, error="unfinished"),
        ],
        transitions=[
            TransitionEvent(0, 4.5, P, "open", "half-open"),
            TransitionEvent(0, 2.25, P, "closed", "open"),
            TransitionEvent(0, 4.625, P, "half-open", "closed"),
        ],
        upstream=[
            UpstreamCall(0.5625, "gpt-4o", "ok", 200),
            UpstreamCall(1.125, "gpt-4o", "ok", 200),
            UpstreamCall(2.125, "gpt-4o", "http_503", 503),
            UpstreamCall(2.25, "claude", "ok", 200),
            UpstreamCall(2.5625, "claude", "ok", 200),
            UpstreamCall(3.125, "claude", "http_500", 500),
            UpstreamCall(4.25, "claude", "ok", 200),
            UpstreamCall(4.625, "gpt-4o", "ok", 200),
            UpstreamCall(5.0625, "gpt-4o", "hang", None),
        ],
        notes=["hand-made"],
    )


def test_counts_and_rates(recording: Recording) -> None:
    report = build_report(recording)
    assert (report.requests, report.succeeded, report.lost) == (9, 6, 3)
    assert report.success_rate == 6 / 9
    assert report.throughput == 9 / 6
    assert report.errors == {"all_targets_failed": 2, "unfinished": 1}
    assert report.served_by == {P: 3, S: 3}
    assert report.cost_usd == 3 * 0.125 + 3 * 0.03125


def test_latency_is_nearest_rank_over_the_requests_that_succeeded(recording: Recording) -> None:
    # Succeeded: 0.125 (four of them), 0.25, 0.375.
    assert build_report(recording).latency == Latency(p50=0.125, p90=0.375, p99=0.375, max=0.375, mean=0.1875)
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.75) == 3.0
    assert percentile([1.0], 0.99) == 1.0


def test_attempts_come_from_the_trails_and_calls_from_the_upstream(recording: Recording) -> None:
    report = build_report(recording)
    assert report.attempts == {
        P: {"breaker_open": 3, "ok": 3, "server_error": 1, "timeout": 1},
        S: {"ok": 3, "server_error": 1},
    }
    assert report.upstream_calls == {"claude": 4, "gpt-4o": 5}
    assert report.upstream_faults == {
        "claude": {"http_500": 1, "ok": 3},
        "gpt-4o": {"hang": 1, "http_503": 1, "ok": 3},
    }


def test_detection_and_failback_per_incident_and_the_worst(recording: Recording) -> None:
    report = build_report(recording)
    assert (report.primary, report.primary_model) == (P, "gpt-4o")
    assert report.incidents == (
        IncidentReport(2.0, 4.0, 2.5, 0.5, 4.625, 0.625, primary_calls=1),
        IncidentReport(5.0, 5.75, None, None, None, None, primary_calls=1),
    )
    assert (report.time_to_detect, report.time_to_fail_back, report.undetected) == (0.5, 0.625, 1)
    assert report.primary_calls_during_incidents == 2


def test_transitions_are_in_time_order(recording: Recording) -> None:
    assert [(t.at, t.new) for t in build_report(recording).transitions] == [
        (2.25, "open"),
        (4.5, "half-open"),
        (4.625, "closed"),
    ]


def test_the_timeline_bins_requests_by_start_and_calls_by_arrival(recording: Recording) -> None:
    timeline = build_report(recording).timeline
    assert timeline.bin == 0.5
    assert timeline.served == {
        P: [0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        S: [0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0],
    }
    assert timeline.lost == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]
    assert timeline.upstream == {
        "gpt-4o": [0, 1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0],
        "claude": [0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0],
    }


def test_a_run_without_answers_or_outages_still_reports() -> None:
    empty = Recording("router", "empty", 2.0, 1, P, {P: "gpt-4o"})
    report = build_report(empty)
    assert (report.requests, report.lost, report.success_rate, report.latency) == (0, 0, 1.0, None)
    assert (report.incidents, report.time_to_detect, report.time_to_fail_back) == ((), None, None)
    assert report.timeline.lost == [0, 0, 0, 0]


def test_the_json_form_names_units(recording: Recording) -> None:
    data = json.loads(json.dumps(build_report(recording).to_json()))
    assert data["latency_ms"] == {"p50": 125.0, "p90": 375.0, "p99": 375.0, "max": 375.0, "mean": 187.5}
    assert (data["time_to_detect_s"], data["time_to_fail_back_s"], data["duration_s"]) == (0.5, 0.625, 6.0)
    assert data["incidents"][0] == {
        "start_s": 2.0,
        "end_s": 4.0,
        "detected_at_s": 2.5,
        "time_to_detect_s": 0.5,
        "failed_back_at_s": 4.625,
        "time_to_fail_back_s": 0.625,
        "primary_calls": 1,
    }
    assert data["timeline"]["bin_s"] == 0.5 and data["notes"] == ["hand-made"]
    assert data["success_rate"] == round(6 / 9, 6) and data["lost"] == 3
