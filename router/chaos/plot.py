"""The timeline PNG of a chaos run: traffic share per target, and breaker states, over time.

matplotlib is optional (the `plot` extra) and imported only here, only when a PNG is asked for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

from router.chaos.report import Report
from router.resilience.breaker import BreakerState

__all__ = ["MISSING_MATPLOTLIB", "write_timeline"]

MISSING_MATPLOTLIB = "matplotlib is not installed (pip install 'router[plot]'): no PNG written"

_STATES: dict[str, str] = {
    BreakerState.CLOSED: "#4caf50",
    BreakerState.HALF_OPEN: "#ff9800",
    BreakerState.OPEN: "#e53935",
}
_LOST = "#424242"


def write_timeline(reports: Sequence[Report], path: str | os.PathLike[str]) -> str | None:
    """Write the PNG; returns None, or a note saying why it was not written."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return MISSING_MATPLOTLIB
    matplotlib.use("Agg")  # files only: never a window
    pyplot = importlib.import_module("matplotlib.pyplot")
    panels: list[tuple[str, Report]] = []
    for report in reports:
        panels.append(("share", report))
        if report.transitions:
            panels.append(("breakers", report))
    figure, axes = pyplot.subplots(
        len(panels), 1, sharex=True, figsize=(11, 2.8 * len(panels)), squeeze=False
    )
    for axis, (kind, report) in zip(axes[:, 0], panels, strict=True):
        if kind == "share":
            _share(axis, report)
        else:
            _breakers(axis, report)
        for incident in report.incidents:
            axis.axvspan(
                incident.start,
                incident.end,
                facecolor="none",
                edgecolor="black",
                hatch="//",
                alpha=0.35,
                linewidth=0.8,
                zorder=5,
            )
    axes[-1, 0].set_xlabel("seconds from the start of the load (hatched: the primary is down)")
    figure.suptitle(f"chaos: {reports[0].scenario}")
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=100)
    pyplot.close(figure)
    return None


def _share(axis: Any, report: Report) -> None:
    timeline = report.timeline
    bins = len(timeline.lost)
    # One point more than bins, repeating the last: a step drawn "post" then covers the last bin too.
    starts = [index * timeline.bin for index in range(bins + 1)]
    totals = [sum(series[i] for series in timeline.served.values()) + timeline.lost[i] for i in range(bins)]

    def share(series: list[int]) -> list[float]:
        shares = [count / total if total else 0.0 for count, total in zip(series, totals, strict=True)]
        return [*shares, shares[-1]]

    labels = [*timeline.served, "lost"]
    stacks = [share(series) for series in timeline.served.values()] + [share(timeline.lost)]
    colors = [f"C{index}" for index in range(len(timeline.served))] + [_LOST]
    axis.stackplot(starts, *stacks, labels=labels, colors=colors, step="post")
    axis.set_ylim(0, 1)
    axis.set_ylabel("share of requests")
    calls = timeline.upstream.get(report.primary_model)
    if calls:
        # What the primary's upstream received, failed calls included: the cost of not skipping it.
        rates = [count / timeline.bin for count in calls]
        twin = axis.twinx()
        twin.step(starts, [*rates, rates[-1]], where="post", color="black", linewidth=1.2)
        twin.set_ylim(0, max(rates) * 1.1 or 1)
        twin.set_ylabel(f"calls to {report.primary_model} per s")
    axis.set_title(f"{report.contender}: who answered (requests by start time)", loc="left", fontsize=10)
    axis.legend(loc="upper right", fontsize=8, ncols=len(labels))


def _breakers(axis: Any, report: Report) -> None:
    worker = min(event.worker for event in report.transitions)
    targets = list(dict.fromkeys([*report.timeline.served, *(e.target for e in report.transitions)]))
    end = report.duration
    for row, target in enumerate(targets):
        state: str = BreakerState.CLOSED
        since = 0.0
        for event in report.transitions:
            if event.worker != worker or event.target != target:
                continue
            axis.broken_barh([(since, event.at - since)], (row - 0.35, 0.7), color=_STATES.get(state, "grey"))
            state, since = event.new, event.at
        axis.broken_barh(
            [(since, max(0.0, end - since))], (row - 0.35, 0.7), color=_STATES.get(state, "grey")
        )
    axis.set_yticks(range(len(targets)), targets)
    axis.set_ylim(-0.6, len(targets) - 0.4)
    title = f"{report.contender}: breakers (worker {worker}; green closed, orange half-open, red open)"
    axis.set_title(title, loc="left", fontsize=10)
