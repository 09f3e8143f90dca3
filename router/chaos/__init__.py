"""Chaos benchmarks: a scenario (load, fault schedule, policy) run against a fake upstream.

    scenario = load_scenario("scenarios/primary-outage.yaml")
    recording = asyncio.run(run_scenario(scenario))
    report = build_report(recording)       # success rate, latency, detection, failback, cost

`router chaos SCENARIO.yaml` does this, prints the figures and writes them as JSON and a PNG
timeline; `--compare litellm` runs the same scenario through LiteLLM's Router too.
"""

from router.chaos.bench import ChaosResult, litellm_available, run_chaos
from router.chaos.recording import Recording, RequestEvent, TransitionEvent, UpstreamCall
from router.chaos.report import Report, build_report
from router.chaos.runner import run_scenario
from router.chaos.scenario import Scenario, Window, load_scenario, parse_scenario

__all__ = [
    "ChaosResult",
    "Recording",
    "Report",
    "RequestEvent",
    "Scenario",
    "TransitionEvent",
    "UpstreamCall",
    "Window",
    "build_report",
    "litellm_available",
    "load_scenario",
    "parse_scenario",
    "run_chaos",
    "run_scenario",
]
