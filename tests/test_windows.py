"""Context windows the policy does not declare, learned from the model listings of the wires that report
them (Anthropic's `max_input_tokens`), against the fake upstream with the real SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from router import AllTargetsFailed, Router
from router.cli import main
from router.policy import parse_policy
from router.results import Outcome
from router.testing import FakeUpstream
from router.testing.wires.anthropic import LISTED_WINDOW

POLICY = """\
providers:
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: ak-test}}
  local: {{type: openai_compatible, base_url: "{openai}", api_key: sk-test}}
targets:
  haiku: {{provider: claude, model: claude-haiku, price: {{input: 1, output: 5}}}}
  sonnet: {{provider: claude, model: claude-sonnet, context_window: 50000, price: {{input: 3, output: 15}}}}
  llama: {{provider: local, model: llama, price: {{input: 0.1, output: 0.1}}}}
routes:
  chat: {{targets: [haiku, llama]}}
  big: {{targets: [sonnet]}}
"""
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def upstream():
    with FakeUpstream(models=["claude-haiku", "claude-sonnet"]) as up:
        yield up


def _text(up: FakeUpstream) -> str:
    return POLICY.format(anthropic=up.anthropic_base_url, openai=up.base_url)


async def test_a_listed_window_is_learned_and_checked(upstream):
    async with Router(parse_policy(_text(upstream), "p.yaml", env={})) as router:
        assert router.plan.targets["haiku"].window_source == "unknown"
        assert await router.learn_windows() == {"haiku": LISTED_WINDOW}  # a declared one stays as declared
        [(haiku, _), (llama, _)] = router.candidates("chat")
        assert (haiku.context_window, haiku.window_source) == (LISTED_WINDOW, "listing")
        assert (llama.context_window, llama.window_source) == (None, "unknown")  # its wire lists none
        sonnet = router.candidates("big")[0][0]
        assert (sonnet.context_window, sonnet.window_source) == (50000, "policy")
        # Too large for the learned window: skipped without a call, and the next target answers.
        result = await router.complete("chat", USER, max_tokens=LISTED_WINDOW)
        assert result.target == "llama"
        assert result.attempts[0].target == "haiku" and result.attempts[0].outcome == Outcome.WINDOW_TOO_SMALL
        assert (await router.complete("chat", USER, max_tokens=100)).target == "haiku"


async def test_a_learned_window_outlives_a_reload_but_not_a_changed_provider(upstream):
    text = _text(upstream)
    async with Router(parse_policy(text, "p.yaml", env={})) as router:
        await router.learn_windows()
        router.reload(parse_policy(text.replace("llama, price", "llama-2, price"), "p.yaml", env={}))
        assert router.candidates("chat")[0][0].context_window == LISTED_WINDOW
        router.reload(parse_policy(text.replace("api_key: ak-test", "api_key: ak-new"), "p.yaml", env={}))
        assert router.candidates("chat")[0][0].context_window is None


async def test_a_failed_listing_teaches_nothing(upstream):
    text = _text(upstream).replace(upstream.anthropic_base_url, "http://127.0.0.1:9")
    async with Router(parse_policy(text, "p.yaml", env={})) as router:
        assert await router.learn_windows(within=2.0) == {}
        assert router.candidates("chat")[0][0].context_window is None
        with pytest.raises(AllTargetsFailed):
            await router.complete("chat", USER, targets=["haiku"], attempts=1)


def test_explain_windows_asks_the_listings(upstream, tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(_text(upstream))
    runner = CliRunner(env={"COLUMNS": "220"})
    learned = runner.invoke(main, ["explain", str(path), "--route", "chat", "--windows"])
    assert learned.exit_code == 0, learned.output
    assert f"{LISTED_WINDOW} (listing)" in learned.output
    plain = runner.invoke(main, ["explain", str(path), "--route", "chat"])
    assert "(listing)" not in plain.output
