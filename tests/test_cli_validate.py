"""`router validate` checks the environment as well as the file (issue 11); `--structure-only` the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from router import Router
from router.cli import main
from router.errors import PolicyError
from router.testing.scripted import ScriptedProvider

POLICY = """\
providers:
  openai: {type: openai}
  claude: {type: anthropic}
  aws: {type: bedrock, region: us-east-1}
targets:
  a: {provider: openai, model: m, context_window: 8000}
routes:
  chat: {targets: [a]}
"""
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (*KEYS, "MISTRAL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    return path


def test_validate_names_every_missing_key_and_credential_with_its_line(
    policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-NOT-SHOWN")
    result = CliRunner().invoke(main, ["validate", str(policy)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{policy}:2:3: no API key: set api_key in the policy or OPENAI_API_KEY in the environment "
        "(providers.openai.api_key)",
        f"{policy}:3:3: no API key: set api_key in the policy or ANTHROPIC_API_KEY in the environment "
        "(providers.claude.api_key)",
        f"{policy}:4:3: half a set of AWS credentials: AWS_ACCESS_KEY_ID is set in the environment but "
        "AWS_SECRET_ACCESS_KEY is not (providers.aws.aws_secret_access_key)",
    ]
    assert "AKIA-NOT-SHOWN" not in result.output


def test_validate_passes_once_the_environment_has_them(policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-2")
    result = CliRunner().invoke(main, ["validate", str(policy)])
    assert (result.exit_code, result.output) == (0, f"{policy}: ok\n")


def test_structure_only_checks_the_file_alone(policy: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "--structure-only", str(policy)])
    assert (result.exit_code, result.output) == (0, f"{policy}: ok\n")


def test_commands_that_start_a_router_report_every_missing_key_where_it_belongs(policy: Path) -> None:
    result = CliRunner().invoke(main, ["explain", str(policy)])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{policy}:2:3", f"{policy}:3:3"]


# --- the library reads the file as the commands do ---------------------------------------------


def test_from_file_reports_every_missing_key_and_credential_at_its_provider(
    policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-NOT-SHOWN")
    with pytest.raises(PolicyError) as caught:
        Router.from_file(policy)
    assert [(issue.line, issue.column, issue.path) for issue in caught.value.issues] == [
        (2, 3, "providers.openai.api_key"),
        (3, 3, "providers.claude.api_key"),
        (4, 3, "providers.aws.aws_secret_access_key"),
    ]
    assert str(caught.value).startswith(
        f"{policy}:2:3: no API key: set api_key in the policy or OPENAI_API_KEY"
    )
    assert "AKIA-NOT-SHOWN" not in str(caught.value)


def test_from_file_needs_no_key_for_a_provider_whose_client_is_given(policy: Path) -> None:
    given = {"openai": ScriptedProvider(), "aws": ScriptedProvider()}
    with pytest.raises(PolicyError) as caught:
        Router.from_file(policy, providers=given)
    assert [(issue.line, issue.path) for issue in caught.value.issues] == [(3, "providers.claude.api_key")]

    router = Router.from_file(policy, providers={**given, "claude": ScriptedProvider()})
    assert router.version == 1


def test_a_reload_reports_a_new_provider_without_a_key_at_its_line(policy: Path) -> None:
    given = {name: ScriptedProvider() for name in ("openai", "claude", "aws")}
    router = Router.from_file(policy, providers=given)
    policy.write_text(POLICY.replace("\ntargets:", "\n  mistral: {type: mistral}\ntargets:"))
    with pytest.raises(PolicyError) as caught:
        router.reload()
    assert [(issue.line, issue.column, issue.path) for issue in caught.value.issues] == [
        (5, 3, "providers.mistral.api_key")
    ]
    assert router.version == 1


def test_a_target_without_a_window_is_a_warning_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(POLICY.replace(", context_window: 8000", "") + "  other: {targets: [a]}\n")
    result = CliRunner().invoke(main, ["validate", "--structure-only", str(path)])
    assert result.exit_code == 0  # a warning, not an error
    assert result.stdout == f"{path}: ok\n"
    assert result.stderr == (
        f"{path}:6:3: warning: target 'a' declares no context_window, so its window is unchecked "
        "(targets.a.context_window)\n"
    )
