"""Reports as terminal tables: one column per contender, so a comparison reads side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.table import Table

from router.chaos.report import Report

__all__ = ["figures_table", "incidents_table", "ms", "seconds"]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def seconds(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.2f} s"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"


def _lost(report: Report) -> str:
    return f"{report.lost}" + (f" ({_counts(report.errors)})" if report.errors else "")


def _detect(report: Report) -> str:
    if not report.incidents:
        return "- (no outage)"
    text = seconds(report.time_to_detect, "never")
    return text + (f" ({report.undetected} of {len(report.incidents)} never)" if report.undetected else "")


def _fail_back(report: Report) -> str:
    if not report.incidents:
        return "- (no outage)"
    measured = sum(1 for incident in report.incidents if incident.time_to_fail_back is not None)
    text = seconds(report.time_to_fail_back, "never")
    return (
        text if measured in (0, len(report.incidents)) else f"{text} ({measured} of {len(report.incidents)})"
    )


_ROWS: tuple[tuple[str, Callable[[Report], str]], ...] = (
    ("requests", lambda r: f"{r.requests} ({r.throughput:.1f}/s, {r.workers} worker{'s' * (r.workers > 1)})"),
    ("success rate", lambda r: f"{r.success_rate:.2%}"),
    ("requests lost", _lost),
    ("broken streams that went on", lambda r: _counts(r.stream_recoveries)),
    ("latency p50", lambda r: ms(r.latency.p50 if r.latency else None)),
    ("latency p99", lambda r: ms(r.latency.p99 if r.latency else None)),
    ("latency max", lambda r: ms(r.latency.max if r.latency else None)),
    ("answered by", lambda r: _counts(r.served_by)),
    ("calls upstream", lambda r: _counts(r.upstream_calls)),
    (
        "calls to the primary while down",
        lambda r: str(r.primary_calls_during_incidents) if r.incidents else "-",
    ),
    ("time to detect (worst)", _detect),
    ("time to fail back (worst)", _fail_back),
    ("cost", lambda r: f"${r.cost_usd:.6f}"),
)


def figures_table(reports: Sequence[Report], title: str = "") -> Table:
    """The headline figures, one column per report (ours first)."""
    table = Table(title=title or None, title_justify="left")
    table.add_column("figure", no_wrap=True)
    for report in reports:
        table.add_column(report.contender, overflow="fold")
    for label, cell in _ROWS:
        table.add_row(label, *(cell(report) for report in reports))
    return table


def incidents_table(report: Report) -> Table:
    """Each outage of the primary: when it was, when traffic left it and came back."""
    table = Table(
        title=f"{report.contender}: outages of {report.primary} ({report.primary_model})",
        title_justify="left",
    )
    for column in ("down", "left it", "detect", "back on it", "fail back", "calls to it"):
        table.add_column(column, no_wrap=True)
    for incident in report.incidents:
        table.add_row(
            f"{incident.start:.2f}-{incident.end:.2f} s",
            seconds(incident.detected_at, "never"),
            seconds(incident.time_to_detect),
            seconds(incident.failed_back_at, "never" if incident.detected_at is not None else "-"),
            seconds(incident.time_to_fail_back),
            str(incident.primary_calls),
        )
    return table
