"""`router demo`: a scripted incident on a local fake upstream, shown live, then its figures.

The demo is a chaos scenario (`router.chaos`) written here: traffic at 40 requests/s per worker
through an OpenAI-wire primary, an Anthropic-wire secondary and a cheap tier on an
OpenAI-compatible preset; a quarter of the way in the primary goes down, and while it is down
the secondary rate-limits some requests (so the cheap tier takes those); then the primary
recovers. Nothing needs a key, Redis or the network. With `redis` and several `workers`, each
worker process sends the whole load and they share breakers through Redis.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections import Counter
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from router.chaos.recording import Recording
from router.chaos.render import figures_table, seconds
from router.chaos.report import Report, build_report
from router.chaos.runner import run_scenario
from router.chaos.scenario import Scenario, parse_scenario
from router.resilience.breaker import BreakerState
from router.results import SKIPS, Outcome

__all__ = ["DEFAULT_DURATION", "demo_scenario", "run_demo"]

DEFAULT_DURATION = 20.0

# Fault and breaker times are in tenths of the duration: the outage runs from 25 % to 60 % of it.
_SCENARIO = """\
# The demo: the primary goes down for a while, then recovers; no request may be lost.
name: demo
duration: {duration}s
load: {{route: chat, rate: 40}}
workers: {workers}
faults:
  - {{target: primary, fault: "503", start: {down}s, end: {up}s}}
  - {{target: secondary, fault: "rate_limited:retry_after=2", start: {down}s, end: {up}s, probability: 0.3}}
policy:
  providers:
    openai:
      type: openai
      breaker: {{fail_max: 3, reset_timeout: {reset}ms, max_reset_timeout: {max_reset}ms}}
    anthropic:
      type: {secondary_wire}
      breaker: {{fail_max: 3, reset_timeout: {reset}ms, max_reset_timeout: {max_reset}ms}}
    local:
      type: vllm
  targets:
    primary: {{provider: openai, model: gpt-4o, price: {{input: 2.50, output: 10.00}}}}
    secondary: {{provider: anthropic, model: claude-3-5-haiku, price: {{input: 0.80, output: 4.00}}}}
    cheap: {{provider: local, model: llama-3.1-8b, price: {{input: 0.05, output: 0.08}}, tier: cheap}}
  routes:
    chat:
      targets: [primary, secondary, cheap]
      latency_budget: {{total: 10s, per_attempt: 2s}}
      retry: {{attempts: 2, backoff_base: 50ms, backoff_max: 500ms}}
  health: {{enabled: true, interval: {reset}ms, unhealthy_after: 3, healthy_after: 1}}
"""

_WIRES = {"primary": "openai", "secondary": "anthropic", "cheap": "vllm (OpenAI-compatible)"}
_STATE_STYLE: dict[str, str] = {
    BreakerState.CLOSED: "green",
    BreakerState.HALF_OPEN: "yellow",
    BreakerState.OPEN: "bold red",
}
_PLAIN_EVERY = 2.0  # seconds between two status lines when the output is not a terminal
_PLAIN_PHASES = {"healthy": "healthy", "PRIMARY DOWN": "DOWN", "primary recovered": "recovered"}


def demo_scenario(duration: float = DEFAULT_DURATION, workers: int = 1) -> Scenario:
    """The demo's scenario, its incident scaled to `duration` seconds."""
    reset = max(250, round(duration * 50))  # 1 s for the default 20 s run
    text = _SCENARIO.format(
        secondary_wire="anthropic" if _anthropic_installed() else "openai",
        duration=f"{duration:g}",
        workers=workers,
        down=f"{duration * 0.25:g}",
        up=f"{duration * 0.6:g}",
        reset=reset,
        max_reset=2 * reset,
    )
    return parse_scenario(text, "<demo>")


def _anthropic_installed() -> bool:
    # `make demo` installs the core only; the Anthropic SDK comes with the `anthropic` extra.
    try:
        return importlib.util.find_spec("anthropic") is not None
    except ValueError:  # present in sys.modules as None: import blocked
        return False


def run_demo(
    console: Console | None = None,
    *,
    duration: float = DEFAULT_DURATION,
    workers: int = 1,
    redis: str | None = None,
) -> int:
    """Run the scripted incident; returns the number of requests lost (0 when all is well)."""
    console = console or Console()
    scenario = demo_scenario(duration, workers)
    [outage] = scenario.incidents
    fleet = f"{workers} worker processes sharing Redis" if redis else f"{workers} worker(s)"
    if not _anthropic_installed():
        console.print(
            "note: the anthropic SDK is not installed (pip install 'router[anthropic]'): "
            "the secondary speaks the OpenAI wire",
            markup=False,
        )
    console.print(
        f"[bold]router demo[/bold]: {fleet}, 40 requests/s each, for {duration:g} s; the primary "
        f"(gpt-4o) goes down from {outage.start:g} s to {outage.end:g} s."
    )
    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:

            def show(recording: Recording, elapsed: float) -> None:
                live.update(_live_view(recording, elapsed, scenario), refresh=True)

            recording = asyncio.run(_run(scenario, workers, redis, show))
    else:
        recording = asyncio.run(_run(scenario, workers, redis, _plain_lines(console, scenario)))
    report = build_report(recording)
    _summary(console, report)
    return report.lost


async def _run(
    scenario: Scenario, workers: int, redis: str | None, monitor: Callable[[Recording, float], None]
) -> Recording:
    return await run_scenario(scenario, workers=workers, redis=redis, monitor=monitor)


# -- live ------------------------------------------------------------------------------------------


def _phase(scenario: Scenario, elapsed: float) -> str:
    [outage] = scenario.incidents
    if elapsed < outage.start:
        return "healthy"
    if elapsed < outage.end:
        return "PRIMARY DOWN"
    return "primary recovered"


def _rates(recording: Recording, now: float) -> Counter[str]:
    """Requests answered per target over the last second."""
    return Counter(e.target for e in recording.requests if e.target is not None and now - 1.0 <= e.end < now)


def _failed_calls(recording: Recording) -> Counter[str]:
    failed: Counter[str] = Counter()
    for event in recording.requests:
        for target, outcome in event.attempts:
            if outcome not in SKIPS and outcome not in (Outcome.OK, Outcome.CANCELLED):
                failed[target] += 1
    return failed


def _states(recording: Recording, column: int) -> dict[str, str]:
    """Each target's breaker (column 0) or health (1) across the workers: "open", or "open 2/3"."""
    seen: dict[str, Counter[str]] = {}
    for status in recording.statuses.values():
        for target, state in (status.breakers, status.health)[column]:
            seen.setdefault(target, Counter())[state] += 1
    result = {}
    for target, counts in seen.items():
        state, count = counts.most_common(1)[0]
        total = sum(counts.values())
        result[target] = state if count == total else f"{state} {count}/{total}"
    return result


def _live_view(recording: Recording, elapsed: float, scenario: Scenario) -> Group:
    now = min(max(elapsed, 0.0), scenario.duration)
    rates, failed = _rates(recording, elapsed), _failed_calls(recording)
    breakers, health = _states(recording, 0), _states(recording, 1)
    answered = Counter(e.target for e in recording.requests if e.target is not None)
    lost = sum(1 for e in recording.requests if not e.ok)
    table = Table(title_justify="left")
    for column in ("target", "provider", "req/s", "answered", "failed calls", "breaker", "health"):
        table.add_column(column, no_wrap=True)
    for target in recording.models:
        state = breakers.get(target, "-")
        table.add_row(
            target,
            _WIRES.get(target, ""),
            f"{rates[target]:.0f}",
            str(answered[target]),
            str(failed[target]),
            Text(state, style=_STATE_STYLE.get(state.split()[0], "")),
            health.get(target, "-"),
        )
    phase = _phase(scenario, elapsed)
    header = Text.assemble(
        (f"{now:5.1f} / {scenario.duration:g} s  ", "bold"),
        (phase, "bold red" if phase == "PRIMARY DOWN" else "green"),
        f"   requests {len(recording.requests)}, lost ",
        (str(lost), "bold red" if lost else "bold green"),
    )
    events = [
        f"{event.at:6.2f} s  breaker {event.target}: {event.old} -> {event.new}"
        for event in recording.transitions
        if event.worker == 0
    ][-4:]
    return Group(header, table, Text("\n".join(events), style="dim"))


def _plain_lines(console: Console, scenario: Scenario) -> Callable[[Recording, float], None]:
    """Without a terminal: one status line every couple of seconds, readable in a CI log."""
    printed = -_PLAIN_EVERY

    def line(recording: Recording, elapsed: float) -> None:
        nonlocal printed
        if elapsed < printed + _PLAIN_EVERY or elapsed > scenario.duration + _PLAIN_EVERY:
            return
        printed = elapsed
        rates, breakers = _rates(recording, elapsed), _states(recording, 0)
        targets = "  ".join(f"{t} {rates[t]:.0f}/s {breakers.get(t, '-')}" for t in recording.models)
        lost = sum(1 for e in recording.requests if not e.ok)
        phase = _PLAIN_PHASES[_phase(scenario, elapsed)]
        console.print(f"{max(elapsed, 0.0):5.1f}s {phase:<9} {targets}  lost {lost}", soft_wrap=True)

    return line


# -- the summary -----------------------------------------------------------------------------------


def _summary(console: Console, report: Report) -> None:
    console.print(figures_table([report], "the run"))
    incident = report.incidents[0]
    console.print(
        f"traffic left the primary {seconds(incident.time_to_detect, 'never')} after it went down "
        f"and was back on it {seconds(incident.time_to_fail_back, 'never')} after it recovered; "
        f"{incident.primary_calls} calls reached it while it was down."
    )
    for event in report.transitions:
        if event.worker == min(t.worker for t in report.transitions):
            console.print(f"  {event.at:6.2f} s  breaker {event.target}: {event.old} -> {event.new}")
    style = "bold red" if report.lost else "bold green"
    console.print(f"requests lost: [{style}]{report.lost}[/{style}]")
