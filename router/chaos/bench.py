"""`router chaos`: run a scenario through our router (and LiteLLM's), report, write JSON and PNG.

Each contender runs in a phase of its own, on a fresh fake upstream with the same seed and the
same fault schedule: LiteLLM leaves tasks and threads behind that would disturb anything
measured beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import platform
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from router.chaos.litellm_router import LITELLM_GAPS
from router.chaos.plot import write_timeline
from router.chaos.recording import Recording
from router.chaos.render import figures_table, incidents_table
from router.chaos.report import Report, build_report
from router.chaos.runner import run_scenario
from router.chaos.scenario import Scenario
from router.testing import FaultRule

__all__ = ["ChaosResult", "litellm_available", "publish", "run_chaos"]


@dataclass(slots=True)
class ChaosResult:
    reports: list[Report]
    json_path: Path
    png_path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests our router lost (the exit status of `router chaos` says whether any were)."""
        return self.reports[0].lost


def litellm_available() -> bool:
    return importlib.util.find_spec("litellm") is not None


def run_chaos(
    scenario: Scenario,
    out: str | os.PathLike[str],
    *,
    compare: tuple[str, ...] = (),
    workers: int | None = None,
    redis: str | None = None,
    console: Console | None = None,
) -> ChaosResult:
    """Run the scenario (ours, then each of `compare`), print the figures, write the files."""
    console = console or Console()
    notes: list[str] = []
    contenders = ["router"]
    for name in compare:
        if name == "litellm" and not litellm_available():
            notes.append("litellm is not installed (pip install -e '.[bench]'): no comparison made")
        else:
            contenders.append(name)
    reports = []
    for contender in contenders:
        recording = _phase(scenario, contender, workers, redis, console)
        if contender == "litellm":
            recording.notes.extend(LITELLM_GAPS)
        reports.append(build_report(recording))
    return publish(scenario, reports, out, console=console, notes=notes)


def publish(
    scenario: Scenario,
    reports: list[Report],
    out: str | os.PathLike[str],
    *,
    console: Console,
    notes: list[str] | None = None,
    simulated: bool = False,
) -> ChaosResult:
    """Write the reports as NAME.json and NAME.png (NAME.simulated.*: a run in virtual time) and
    print the figures."""
    notes = notes if notes is not None else []
    stem = f"{scenario.name}.simulated" if simulated else scenario.name
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    png_path: Path | None = directory / f"{stem}.png"
    assert png_path is not None
    skipped = write_timeline(reports, png_path)
    if skipped:
        notes.append(skipped)
        png_path = None
    json_path = directory / f"{stem}.json"
    document = _document(scenario, reports, notes, png_path) | ({"simulated": True} if simulated else {})
    json_path.write_text(json.dumps(document, indent=2) + "\n")

    name = f"{scenario.name} (simulated)" if simulated else scenario.name
    title = f"{name}: {scenario.description}" if scenario.description else name
    console.print(figures_table(reports, title))
    for report in reports:
        if report.incidents:
            console.print(incidents_table(report))
        for note in report.notes:
            console.print(f"[dim]{report.contender}: {note}[/dim]")
    for note in notes:
        console.print(f"note: {note}")
    console.print(f"requests lost: {reports[0].lost}")
    console.print(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return ChaosResult(reports, json_path, png_path, notes)


def _phase(
    scenario: Scenario, contender: str, workers: int | None, redis: str | None, console: Console
) -> Recording:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=console.is_terminal,  # a log keeps the last state of the bar; a terminal, the table
    ) as progress:
        task = progress.add_task(f"{contender}: {scenario.name}", total=scenario.duration, counts="")

        def monitor(recording: Recording, elapsed: float) -> None:
            lost = sum(1 for event in recording.requests if not event.ok)
            counts = f"{len(recording.requests)} requests, {lost} lost"
            progress.update(task, completed=min(max(elapsed, 0.0), scenario.duration), counts=counts)

        recording = asyncio.run(
            run_scenario(scenario, contender=contender, workers=workers, redis=redis, monitor=monitor)
        )
        progress.update(task, completed=scenario.duration, refresh=True)
        return recording


def _describe_rule(rule: FaultRule) -> str:
    """`model: fault (scope)` in the words of the scenario file."""
    scope = []
    if rule.start is not None or rule.end is not None:
        end = "" if rule.end is None else f"{rule.end:g}s"
        scope.append(f"{rule.start or 0:g}s-{end}")
    if rule.probability < 1:
        scope.append(f"p={rule.probability:g}")
    if rule.after:
        scope.append(f"after {rule.after}")
    if rule.times is not None:
        scope.append(f"{rule.times} times")
    arguments = [
        f"{field.name}={value:g}" if isinstance(value, float) else f"{field.name}={value}"
        for field in dataclasses.fields(rule.fault)
        if (value := getattr(rule.fault, field.name)) not in (None, ())
        and field.name != "status"  # already in the name: http_503
    ]
    fault = rule.fault.name + (f"({', '.join(arguments)})" if arguments else "")
    return f"{rule.model}: {fault}" + (f" ({', '.join(scope)})" if scope else "")


def _document(
    scenario: Scenario, reports: list[Report], notes: list[str], png: Path | None
) -> dict[str, Any]:
    load = scenario.load
    return {
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "duration_s": scenario.duration,
            "seed": scenario.seed,
            "load": {
                "route": load.route,
                "rate": load.rate,
                "concurrency": load.concurrency,
                "stream": load.stream,
                "max_tokens": load.max_tokens,
            },
            "faults": [_describe_rule(rule) for rule in scenario.faults],
            "primary": scenario.primary,
            "incidents": [{"start_s": w.start, "end_s": w.end} for w in scenario.incidents],
            "policy": scenario.policy_file,
        },
        "reports": {report.contender: report.to_json() for report in reports},
        "png": png.name if png else None,
        "notes": notes,
        "versions": {
            "python": platform.python_version(),
            "router": _version("router"),
            "litellm": _version("litellm") if len(reports) > 1 else None,
        },
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
