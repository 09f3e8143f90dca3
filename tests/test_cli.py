"""The command line, in process (click's runner) and, for the hand-run workflow, as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from router.cli import main
from router.testing import FakeUpstream, Fault

from .redis_support import free_port

POLICIES = sorted(Path(__file__).parent.parent.joinpath("policies").glob("*.yaml"))

CHAIN = """\
providers:
  up:
    type: openai_compatible
    base_url: {base_url}
    api_key: ${{UP_KEY:-local}}
targets:
  primary: {{provider: up, model: primary-model, price: {{input: 1, output: 2}}}}
  secondary: {{provider: up, model: secondary-model}}
routes:
  chat:
    targets: [primary, secondary]
    retry: {{attempts: 2, backoff_base: 10ms}}
"""


def test_validate_accepts_every_example_policy():
    result = CliRunner().invoke(main, ["validate", *map(str, POLICIES)])
    assert result.exit_code == 0, result.output
    assert len(POLICIES) >= 3 and result.output.count(": ok") == len(POLICIES)


def test_validate_reports_file_line_column_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  p: {type: openai}\ntargets: {}\nroutes:\n  r:\n    targets: [x]\n    retyr: {}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:7:5: unknown key 'retyr'; did you mean 'retry'? (routes.r.retyr)" in result.output


def test_schema_is_json_with_the_top_level_sections():
    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert {"providers", "targets", "routes"} <= set(schema["properties"])


def test_explain_lists_candidates_in_order(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(CHAIN.format(base_url="http://127.0.0.1:9/v1"))
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["explain", str(policy)])
    assert result.exit_code == 0, result.output
    assert result.output.index("primary-model") < result.output.index("secondary-model")
    assert "closed" in result.output


def test_complete_fails_over_and_prints_the_trail(tmp_path):
    with FakeUpstream() as upstream:
        upstream.set_reply("secondary-model", "Answer from the secondary.")
        upstream.add_fault("primary-model", Fault.unavailable())
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=upstream.base_url))
        result = CliRunner().invoke(main, ["complete", str(policy), "chat", "Hello", "-v"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Answer from the secondary."
    assert "primary (up/primary-model): server_error" in result.stderr
    assert "secondary (up/secondary-model): ok" in result.stderr


def test_complete_exits_1_with_the_error_kind(tmp_path):
    with FakeUpstream() as upstream:
        upstream.add_fault("*", Fault.unauthorized())
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=upstream.base_url))
        result = CliRunner().invoke(main, ["complete", str(policy), "chat", "Hello"])
    assert result.exit_code == 1
    assert "error: all_targets_failed" in result.stderr and "auth" in result.stderr


def test_complete_stream(tmp_path):
    with FakeUpstream() as upstream:
        upstream.set_reply("primary-model", "streamed words arrive")
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=upstream.base_url))
        result = CliRunner().invoke(main, ["complete", str(policy), "chat", "Hello", "--stream"])
    assert result.exit_code == 0 and result.stdout.strip() == "streamed words arrive"


def test_fake_upstream_and_complete_as_processes(tmp_path):
    port = free_port()
    router_cmd = [sys.executable, "-m", "router.cli"]
    server = subprocess.Popen(
        [*router_cmd, "fake-upstream", "--port", str(port), "--fault", "primary-model=503"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=f"http://127.0.0.1:{port}/v1"))
        done = subprocess.run(
            [*router_cmd, "complete", str(policy), "chat", "Hi", "-v"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "UP_KEY": "sk-local-only"},
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "secondary (up/secondary-model): ok" in done.stderr
    assert "sk-local-only" not in done.stdout + done.stderr


def test_demo_loses_no_request():
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["demo", "--duration", "4"])
    assert result.exit_code == 0, result.output
    assert "requests lost: 0" in result.output
    assert "closed -> open" in result.output and "-> closed" in result.output  # by its probe, or by health's


def test_models_lists_what_each_provider_offers(tmp_path):
    with FakeUpstream(models=["alpha", "beta"]) as upstream:
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=upstream.base_url))
        result = CliRunner().invoke(main, ["models", str(policy), "--provider", "up"])
    assert result.exit_code == 0, result.output
    assert "up: 2 models" in result.stdout and "  alpha" in result.stdout and "  beta" in result.stdout


def test_models_reports_a_provider_that_fails(tmp_path):
    with FakeUpstream() as upstream:
        policy = tmp_path / "p.yaml"
        policy.write_text(CHAIN.format(base_url=upstream.base_url))
        upstream.stop()  # nothing listens any more
        result = CliRunner().invoke(main, ["models", str(policy)])
    assert result.exit_code == 1 and "up: error: connection" in result.stderr
