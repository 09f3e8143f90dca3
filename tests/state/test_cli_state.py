"""`router drain`, `restore` and `status` against the state a running fleet shares."""

from __future__ import annotations

import json
from pathlib import Path

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
