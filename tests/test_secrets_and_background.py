"""Secrets beyond keys (issue 11): header values, URL passwords and whatever came from the environment
are masked in reprs, JSON dumps, errors and the CLI, and covered by the log filter (and so by the
suite's leak guard). Background work survives any exception: logged, and the next round comes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from router import Policy, ProviderError, Router, logs, parse_policy
from router.cli import main
from router.errors import AllTargetsFailed, ErrorKind
from router.testing import FakeClock, FakeUpstream, Fault
from router.testing.scripted import ScriptedProvider

HEADER_SECRET = "hdr-secret-9f8e7d6c5b4a"
URL_PASSWORD = "url-password-1a2b3c4d5e"
USER = [{"role": "user", "content": "hi"}]


def policy_text(base_url: str, model: str = "m") -> str:
    with_password = base_url.replace("http://", f"http://gateway:{URL_PASSWORD}@")
    return f"""\
providers:
  p:
    type: openai_compatible
    base_url: {with_password}
    api_key: sk-test
    headers: {{x-api-key: {HEADER_SECRET}, x-team: search}}
targets:
  t: {{provider: p, model: {model}}}
routes:
  chat: {{targets: [t], retry: {{attempts: 1}}}}
"""


def test_header_values_and_url_passwords_are_masked_in_reprs_and_dumps() -> None:
    policy = parse_policy(policy_text("http://127.0.0.1:9/v1"), env={})
    spec = policy.providers["p"]
    shown = [repr(policy), str(policy), policy.model_dump_json(), repr(policy.model_dump()), repr(spec)]
    for text in shown:
        assert HEADER_SECRET not in text and URL_PASSWORD not in text
    assert "gateway:***@127.0.0.1:9" in repr(policy)
    assert "'x-api-key': '***'" in repr(policy)
    # Each is still the value itself wherever it is used.
    assert spec.headers["x-api-key"] == HEADER_SECRET and f"{spec.headers['x-api-key']}" == HEADER_SECRET
    assert spec.base_url == f"http://gateway:{URL_PASSWORD}@127.0.0.1:9/v1"


async def test_the_plan_and_the_log_filter_hide_them_too() -> None:
    async with Router(parse_policy(policy_text("http://127.0.0.1:9/v1"), env={})) as router:
        assert HEADER_SECRET not in repr(router.plan) and URL_PASSWORD not in repr(router.plan)
    assert logs.scrub(f"sent {HEADER_SECRET} to {URL_PASSWORD}") == "sent *** to ***"


def test_values_from_the_environment_are_secrets_of_the_log_filter() -> None:
    text = policy_text("http://127.0.0.1:9/v1").replace("api_key: sk-test", "api_key: ${TOKEN_FROM_ENV}")
    parse_policy(text, env={"TOKEN_FROM_ENV": "env-token-5e4d3c2b1a0f"})
    assert logs.scrub("token env-token-5e4d3c2b1a0f") == "token ***"


async def test_an_upstream_error_that_echoes_the_request_is_redacted(fake_upstream: FakeUpstream) -> None:
    echo = f"bad header x-api-key={HEADER_SECRET} from gateway:{URL_PASSWORD}"
    fake_upstream.add_fault("m", Fault.http(400, message=echo))
    async with Router(parse_policy(policy_text(fake_upstream.base_url), env={})) as router:
        with pytest.raises((ProviderError, AllTargetsFailed)) as caught:
            await router.complete("chat", USER)
    text = f"{caught.value} {caught.value!r} {getattr(caught.value, 'attempts', '')}"
    assert HEADER_SECRET not in text and URL_PASSWORD not in text
    assert "***" in text


def test_router_complete_verbose_shows_no_header_value(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    echo = f"bad header x-api-key={HEADER_SECRET}"
    fake_upstream.add_fault("m", Fault.http(400, message=echo))
    path = tmp_path / "p.yaml"
    path.write_text(policy_text(fake_upstream.base_url))
    result = CliRunner().invoke(main, ["complete", str(path), "chat", "hi", "-v"])
    assert result.exit_code == 1
    assert HEADER_SECRET not in result.output and URL_PASSWORD not in result.output


async def test_a_base_url_with_a_password_works_on_both_transports(fake_upstream: FakeUpstream) -> None:
    fake_upstream.set_reply("m", "through the gateway")
    for transport in ("aiohttp", "httpx"):
        text = policy_text(fake_upstream.base_url).replace("api_key: sk-test", f"transport: {transport}")
        async with Router(parse_policy(text, env={})) as router:
            assert (await router.complete("chat", USER)).text == "through the gateway"
            assert await router.list_models("p") == ["m"]


class _Broken(ScriptedProvider):
    """A client whose listing fails with a library's own exception, not a ProviderError."""

    async def list_models(self) -> list[str]:
        raise ValueError("Cannot combine AUTHORIZATION header with AUTH argument")


async def test_a_listing_that_raises_anything_is_a_failed_listing() -> None:
    policy = parse_policy(policy_text("http://127.0.0.1:9/v1"), env={})
    async with Router(policy, providers={"p": _Broken("p")}) as router:
        listed = await router.list_models("p")
    assert isinstance(listed, ProviderError) and listed.kind == ErrorKind.CONNECTION
    assert "ValueError" in listed.message


def test_router_models_prints_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("router._router.on_first_call", lambda name, *args, **kwargs: _Broken(name))
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("http://127.0.0.1:9/v1"))
    result = CliRunner().invoke(main, ["models", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == "p: error: connection: the listing failed (ValueError)"
    assert result.exception is None or isinstance(result.exception, SystemExit)


HEALTH = """\
providers:
  p: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  a: {provider: p, model: a}
  b: {provider: p, model: b}
routes:
  chat: {targets: [a, b]}
health: {enabled: true, interval: 1s, probe: models}
"""


class _FlakyListing(ScriptedProvider):
    """Fails its first listings with an exception no adapter should raise; then lists."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures
        self.listings = 0

    async def list_models(self) -> list[str]:
        self.listings += 1
        if self.listings <= self.failures:
            raise ValueError("a library's bug")
        return ["a", "b"]


async def test_the_health_checker_survives_a_failing_store_and_failing_probes(caplog: Any) -> None:
    clock = FakeClock()
    provider = _FlakyListing("p", failures=2)
    router = Router(Policy.model_validate(_yaml(HEALTH)), providers={"p": provider}, clock=clock)
    store = router.store
    original = store.take_lease
    calls = 0

    async def take_lease(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("the store's bug, once per target")
        return await original(*args, **kwargs)

    store.take_lease = take_lease  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="router"):
        await router.start()
        for _ in range(8):
            await asyncio.sleep(0)
            clock.advance(1.0)
            for _ in range(20):
                await asyncio.sleep(0)
    status = {row.target: row.health for row in await router.status()}
    running = [task for task in router._background if task is router._health_task]
    assert running and not running[0].done()  # still checking
    await router.aclose()
    assert status == {"a": "healthy", "b": "healthy"}
    assert provider.listings > 2
    assert "checking the health of a failed (RuntimeError)" in caplog.text


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)
