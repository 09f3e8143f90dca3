"""`router drain`, `restore` and `status` against the state a running fleet shares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli import main

POLICY = """\
providers:
  up: {{type: openai_compatible, base_url: "http://127.0.0.1:9/v1", api_key: local}}
targets:
  primary: {{provider: up, model: primary-model}}
  backup: {{provider: up, model: backup-model}}
routes:
  chat: {{targets: [primary, backup]}}
{state}"""


def write(tmp_path: Path, state: str = "") -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(state=state))
    return str(path)


def test_drain_on_memory_state_says_it_reaches_no_process_and_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["drain", write(tmp_path), "primary"])
    assert result.exit_code == 2
    assert "no running router can hear a drain" in result.output
    result = CliRunner().invoke(main, ["restore", write(tmp_path), "primary"])
    assert result.exit_code == 2


def test_drain_and_restore_on_redis_state_show_in_status(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    policy = write(tmp_path, f'state: {{backend: redis, url: "{redis_url}", namespace: "{namespace}"}}\n')
    drained = CliRunner().invoke(main, ["drain", policy, "primary"])
    assert drained.exit_code == 0, drained.output
    assert "drained for every worker" in drained.output
    status = CliRunner().invoke(main, ["status", policy, "--json"])
    rows = {row["target"]: row for row in json.loads(status.output)["targets"]}
    assert rows["primary"]["drained"] and not rows["backup"]["drained"]
    assert CliRunner().invoke(main, ["restore", policy, "primary"]).exit_code == 0
    status = CliRunner().invoke(main, ["status", policy, "--json"])
    assert not any(row["drained"] for row in json.loads(status.output)["targets"])


def test_an_unknown_target_is_refused(tmp_path: Path, redis_url: str, namespace: str) -> None:
    policy = write(tmp_path, f'state: {{backend: redis, url: "{redis_url}", namespace: "{namespace}"}}\n')
    result = CliRunner().invoke(main, ["drain", policy, "nope"])
    assert result.exit_code == 2 and "unknown target 'nope'" in result.output


# Nothing listens on port 1.
NO_REDIS = 'state: {backend: redis, url: "redis://127.0.0.1:1/0"}\n'
REFUSED = "error: redis at redis://127.0.0.1:1/0: ConnectionError: "


@pytest.mark.parametrize(
    ("command", "extra"),
    [("status", []), ("status", ["--json"]), ("drain", ["primary"]), ("restore", ["primary"])],
)
def test_with_the_shared_state_down_a_command_says_so_in_one_line_and_exits_2(
    tmp_path: Path, command: str, extra: list[str]
) -> None:
    result = CliRunner().invoke(main, [command, write(tmp_path, NO_REDIS), *extra])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(REFUSED)


def test_with_the_shared_state_down_a_process_prints_only_the_error(tmp_path: Path) -> None:
    """Not the router's own warning besides it: logging is not configured in the command."""
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "status", write(tmp_path, NO_REDIS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(REFUSED)
