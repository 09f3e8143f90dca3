"""Hostile policy files: every one is a located `PolicyError` in well under a second, never a
traceback, a hang, or a policy that loads with nonsense in it (issue 11).

The corpus holds each case the issue reproduced; the fuzz test mutates the shipped policies
(values, keys, text and bytes) and holds every mutant to the same promise.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from router.errors import PolicyError
from router.policy import Policy, load_policy, parse_policy
from router.policy.compile import compile_plan
from router.policy.interpolate import interpolate
from router.policy.model import MAX_DURATION
from router.policy.source import MAX_BYTES, decode_source

EXAMPLES = sorted((Path(__file__).parents[2] / "policies").glob("*.yaml"))
TEXTS = [path.read_text(encoding="utf-8") for path in EXAMPLES]
ENV = {"OPENAI_API_KEY": "sk-test", "SET": "value"}
QUICK = 1.0  # seconds: a hostile file is refused in less
MINIMAL = """\
providers:
  openai:
    type: openai
targets:
  mini:
    provider: openai
    model: gpt-4o-mini
routes:
  chat:
    targets: [mini]
"""


def billion_laughs() -> str:
    """The classic: ten levels of nine aliases each, 10**9 strings once expanded, in about 2 KB."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        lines.append(f"lol{level}: &lol{level} [{', '.join([f'*lol{level - 1}'] * 9)}]")
    return MINIMAL + "\n".join(lines) + "\n"


def quadratic(size: int = 1_000_000) -> str:
    """One large anchored list, then as many aliases to it as fit: a megabyte that would expand to
    about 10**10 values."""
    half = size // 2
    anchor = "x: &x [" + ", ".join(["a"] * (half // 3)) + "]\n"
    return anchor + "y: [" + ", ".join(["*x"] * (half // 4)) + "]\n"


def under_route(text: str) -> str:
    return MINIMAL + text


def in_provider(text: str) -> str:
    return MINIMAL.replace("    type: openai\n", f"    type: openai\n{text}")


def in_target(text: str) -> str:
    return MINIMAL.replace("    model: gpt-4o-mini\n", f"    model: gpt-4o-mini\n{text}")


def chain(anchored: str, length: int) -> str:
    """`length` anchors, each holding an alias to the one before: shallow as written, deep expanded."""
    lines = ["a0: &a0 {x: 1}", *(f"a{i}: &a{i} {anchored.format(i - 1)}" for i in range(1, length))]
    return "\n".join(lines) + "\n"


FOUR_HUNDRED_DIGITS = "9" * 400

# (id, policy text, the dotted path of an issue that must be among those raised, or "" for the top)
CORPUS = [
    ("billion-laughs", billion_laughs(), ""),
    ("quadratic-1mb", quadratic(), ""),
    ("quadratic-under-the-size-cap", quadratic(MAX_BYTES - 1000), ""),
    ("nesting-5000", "a: " + "[" * 5000 + "]" * 5000 + "\n", ""),
    ("nesting-5000-block", "".join(" " * i + "- \n" for i in range(1, 1200)), ""),
    ("alias-chain-depth", chain("[*a{}]", 5000), ""),
    ("merge-chain-depth", chain("{{<<: *a{}}}", 3000), ""),
    ("too-large", MINIMAL + "#" * MAX_BYTES + "\n", ""),
    ("surrogate-model", MINIMAL.replace("model: gpt-4o-mini", 'model: "\\ud800"'), "targets.mini.model"),
    ("surrogate-key", MINIMAL + '"\\udfff": 1\n', "\\udfff"),
    (
        "integer-of-5000-digits",
        in_provider(f"    limits: {{rpm: {'9' * 5000}}}\n"),
        "providers.openai.limits.rpm",
    ),
    ("impossible-date", in_target("    tier: 2024-13-45\n"), "targets.mini.tier"),
    ("total-0s", under_route("    latency_budget: {total: 0s}\n"), "routes.chat.latency_budget.total"),
    (
        "total-400-digits",
        under_route(f"    latency_budget: {{total: {FOUR_HUNDRED_DIGITS}s}}\n"),
        "routes.chat.latency_budget.total",
    ),
    (
        "per-attempt-0ms",
        under_route("    latency_budget: {per_attempt: 0ms}\n"),
        "routes.chat.latency_budget.per_attempt",
    ),
    (
        "first-token-0s",
        under_route("    latency_budget: {first_token: 0s}\n"),
        "routes.chat.latency_budget.first_token",
    ),
    ("idle-0s", under_route("    latency_budget: {idle: 0s}\n"), "routes.chat.latency_budget.idle"),
    ("hedge-after-0s", under_route("    hedge_after: 0s\n"), "routes.chat.hedge_after"),
    (
        "hedge-after-400-digits",
        under_route(f"    hedge_after: {FOUR_HUNDRED_DIGITS}ms\n"),
        "routes.chat.hedge_after",
    ),
    (
        "reset-timeout-0s",
        in_provider("    breaker: {reset_timeout: 0s}\n"),
        "providers.openai.breaker.reset_timeout",
    ),
    ("breaker-window-0s", in_provider("    breaker: {window: 0s}\n"), "providers.openai.breaker.window"),
    ("breaker-window-2-days", in_provider("    breaker: {window: 48h}\n"), "providers.openai.breaker.window"),
    ("retry-budget-window-100000h", under_route("retry_budget: {window: 100000h}\n"), "retry_budget.window"),
    (
        "retry-budget-window-infinite",
        under_route(f"retry_budget: {{window: {FOUR_HUNDRED_DIGITS}h}}\n"),
        "retry_budget.window",
    ),
    ("health-interval-0s", under_route("health: {enabled: true, interval: 0s}\n"), "health.interval"),
    ("health-interval-1ms", under_route("health: {enabled: true, interval: 1ms}\n"), "health.interval"),
    ("reconcile-interval-0s", under_route("state: {reconcile_interval: 0s}\n"), "state.reconcile_interval"),
    ("rpm-true", in_provider("    limits: {rpm: true}\n"), "providers.openai.limits.rpm"),
    ("context-window-true", in_target("    context_window: true\n"), "targets.mini.context_window"),
    ("fail-max-true", in_provider("    breaker: {fail_max: true}\n"), "providers.openai.breaker.fail_max"),
    ("version-true", "version: true\n" + MINIMAL, "version"),
    ("price-inf", in_target("    price: {input: .inf}\n"), "targets.mini.price.input"),
    ("price-1e400", in_target("    price: {output: 1e400}\n"), "targets.mini.price.output"),
    ("price-nan", in_target("    price: {output: .nan}\n"), "targets.mini.price.output"),
    (
        "weight-inf",
        MINIMAL.replace("[mini]", "[{target: mini, weight: .inf}]"),
        "routes.chat.targets[0].weight",
    ),
    ("budget-inf", under_route("budgets:\n  b: {route: chat, usd: .inf}\n"), "budgets.b.usd"),
    ("budget-zero", under_route("budgets:\n  b: {route: chat, usd: 0}\n"), "budgets.b.usd"),
    ("max-cost-1e400", under_route("    max_cost: 1e400\n"), "routes.chat.max_cost"),
    ("state-url-http", under_route("state: {backend: redis, url: 'http://localhost:6379'}\n"), "state.url"),
    ("state-url-text", under_route("state: {backend: redis, url: not a url}\n"), "state.url"),
    ("base-url-text", in_provider("    base_url: not a url\n"), "providers.openai.base_url"),
    ("base-url-ftp", in_provider("    base_url: ftp://example.com/v1\n"), "providers.openai.base_url"),
    (
        "base-url-bad-port",
        in_provider("    base_url: 'http://example.com:port/v1'\n"),
        "providers.openai.base_url",
    ),
    ("base-url-bad-ipv6", in_provider("    base_url: 'http://[::1/v1'\n"), "providers.openai.base_url"),
    (
        "header-line-break",
        in_provider('    headers: {X-A: "a\\r\\nX-Evil: b"}\n'),
        "providers.openai.headers",
    ),
    ("header-name-space", in_provider('    headers: {"X A": b}\n'), "providers.openai.headers"),
    ("model-empty", MINIMAL.replace("model: gpt-4o-mini", "model: ''"), "targets.mini.model"),
    ("model-blank", MINIMAL.replace("model: gpt-4o-mini", "model: '  '"), "targets.mini.model"),
    ("attempts-a-billion", under_route("    retry: {attempts: 1000000000}\n"), "routes.chat.retry.attempts"),
    ("nested-default-unset", in_provider("    base_url: ${A:-${B}}\n"), "providers.openai.base_url"),
    (
        "references-nested-too-deep",
        in_provider("    organization: " + "${A:-" * 20 + "x" + "}" * 20 + "\n"),
        "providers.openai.organization",
    ),
]


@pytest.mark.parametrize(("text", "path"), [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_each_hostile_policy_is_a_located_policy_error_within_a_second(text: str, path: str) -> None:
    started = time.perf_counter()
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml", env={})
    elapsed = time.perf_counter() - started
    assert elapsed < QUICK, f"{elapsed:.2f} s"
    issues = caught.value.issues
    assert all(issue.line >= 1 and issue.column >= 1 for issue in issues), issues
    assert path in [issue.path for issue in issues] if path else issues
    str(caught.value).encode("utf-8")  # printable, whatever the file held


def test_a_file_that_is_not_utf8_is_placed_at_its_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("gpt-4o-mini", "gpt-4o-mini-caf\u00e9").encode("latin-1"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.column) == (7, 27)
    assert issue.message == "the file is not UTF-8 text (byte 0xe9)"


def test_a_file_over_the_size_cap_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(MINIMAL.encode() + b"#" * (10 * MAX_BYTES))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.column) == (1, 1)
    assert "larger than 1,048,576 bytes" in issue.message


def test_a_billion_laughs_is_refused_at_the_alias_that_passes_the_bound() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(billion_laughs(), "p.yaml", env={})
    [issue] = caught.value.issues
    assert issue.line > MINIMAL.count("\n")  # among the anchors, not at the top
    assert "expands to more than 200,000 keys and values" in issue.message


def test_a_large_policy_within_the_bounds_loads() -> None:
    lines = ["providers:", "  openai: {type: openai}", "targets:"]
    lines += [f"  t{i}: {{provider: openai, model: m-{i}, price: {{input: 0.15}}}}" for i in range(2_000)]
    lines += ["routes:", "  chat:", "    targets: [t0, t1999]"]
    assert len(parse_policy("\n".join(lines) + "\n", "p.yaml", env={}).targets) == 2_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a${SET}b}", "avalueb"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${SET:-${UNSET}}", "value"),  # an unused default is not looked at
        ("${UNSET:-$${literal}}", "${literal}"),
    ],
)
def test_references_in_defaults_nest(text: str, expected: str) -> None:
    result = interpolate(text, ENV)
    assert (result.text, result.problems) == (expected, ())


def test_a_nested_reference_that_cannot_resolve_is_a_problem_not_a_literal() -> None:
    result = interpolate("${UNSET:-${ALSO_UNSET}}", ENV)
    assert result.problems == (
        "environment variable 'ALSO_UNSET' is not set and the reference has no default",
    )


# -- fuzzing -----------------------------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    True, False, None, 0, -1, 1, 2**63, -(2**63), 10**400, 1.5, math.inf, -math.inf, math.nan, 1e-300,
    "", " ", "0s", "0ms", "-1s", "1e400s", f"{FOUR_HUNDRED_DIGITS}s", "100000h", "86401s", "24h", "1ms",
    "0.0001ms", "true", "1.5", "\ud800", "\x00", "a\r\nX-Evil: 1", "x" * 5000, "http://", "not a url",
    "ftp://example.com", "redis://", "unix:", "http://u:p@example.com:99999/v1", "${A:-${B}}", "${",
    "$${x}", "${UNSET}", "${SET}", "${SET:-${UNSET}}", [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}},
    ["x"] * 50, {"target": "mini", "weight": math.inf}, {"<<": 1},
]  # fmt: skip
HOSTILE_KEYS = ["", "\ud800", "on", "true", "<<", "type", "model", "x" * 300, "weight", "window", "url"]
SNIPPETS = [
    "\n", ":", "- ", "[", "]", "{", "}", "&a ", "*a", "*undefined", "!!python/object:os.system ", "!!binary ",
    "!custom ", "? ", "---\n", "...\n", "\t", "%YAML 1.1\n", "<<: *a\n", "'", '"', "#", "\x07", "\ufeff",
    "&a [*a]", "[" * 200, "{a: " * 100, "\\ud800", "${", "${A:-${B:-${C}}}", "9" * 500, ".inf", "1e400",
]  # fmt: skip


def _places(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `data`."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _places(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _places(value, (*path, index))


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    """A shipped policy changed in one to three places (values, keys), then maybe as text and as bytes."""
    data = yaml.safe_load(draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        places = [path for path in _places(data) if path]
        leaves = [path for path in places if not isinstance(_at(data, path), dict | list)]
        path = draw(st.sampled_from(leaves if leaves and draw(st.integers(0, 3)) else places))
        parent, key = _at(data, path[:-1]), path[-1]
        operation = draw(st.sampled_from(["replace", "replace", "delete", "add", "rename", "alias"]))
        if operation == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))
        elif operation == "delete":
            del parent[key]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_KEYS))] = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_KEYS))] = parent.pop(key)
        elif operation == "alias":
            # The same object twice: the dumper writes an anchor and an alias.
            other = draw(st.sampled_from(places))
            if other[: len(path)] != path and path[: len(other)] != other:  # no cycles: _places walks it
                parent[key] = _at(data, other)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "insert", "delete", "repeat"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            text = text[:at] + text[at : at + 200] * draw(st.integers(2, 50)) + text[at:]
    data_bytes = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data_bytes)))
        data_bytes = (
            data_bytes[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x00"])) + data_bytes[at:]
        )
    return data_bytes


def nonsense(policy: Policy) -> list[str]:
    """What no policy that loads may hold: each finding says where and what."""
    found: list[str] = []

    def check(value: Any, where: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                check(getattr(value, name), f"{where}.{name}")
        elif isinstance(value, dict):
            for key, item in value.items():
                check(key, f"{where}[key]")
                check(item, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                check(item, f"{where}[{index}]")
        elif isinstance(value, SecretStr):
            check(value.get_secret_value(), where)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                found.append(f"{where}: not text")
        elif isinstance(value, float) and not (math.isfinite(value) and 0 <= value <= 10**9):
            found.append(f"{where}: {value}")

    check(policy, "policy")
    durations = [
        ("retry_budget.window", policy.retry_budget.window),
        ("health.interval", policy.health.interval),
        ("health.timeout", policy.health.timeout),
        ("state.socket_timeout", policy.state.socket_timeout),
        ("state.reconcile_interval", policy.state.reconcile_interval),
    ]
    for name, provider in policy.providers.items():
        breaker = provider.breaker
        for field in ("window", "reset_timeout", "max_reset_timeout"):
            durations.append((f"providers.{name}.breaker.{field}", getattr(breaker, field)))
        durations.append((f"providers.{name}.connect_timeout", provider.connect_timeout))
        for field in ("rpm", "tpm", "max_concurrency"):
            value = getattr(provider.limits, field)
            if value is not None and (isinstance(value, bool) or value < 1):
                found.append(f"providers.{name}.limits.{field}: {value!r}")
        if provider.base_url is not None and not provider.base_url.startswith(("http://", "https://")):
            found.append(f"providers.{name}.base_url: not http(s)")
        if isinstance(breaker.fail_max, bool):
            found.append(f"providers.{name}.breaker.fail_max: a bool")
    for name, target in policy.targets.items():
        if not target.model.strip():
            found.append(f"targets.{name}.model: empty")
        if isinstance(target.context_window, bool):
            found.append(f"targets.{name}.context_window: a bool")
    for name, route in policy.routes.items():
        budget = route.latency_budget
        for field in ("total", "per_attempt", "first_token", "idle"):
            durations.append((f"routes.{name}.latency_budget.{field}", getattr(budget, field)))
        durations.append((f"routes.{name}.hedge_after", route.hedge_after))
        for entry in route.targets:
            if not isinstance(entry, str) and not (0 < entry.weight < math.inf):
                found.append(f"routes.{name}: weight {entry.weight}")
    found += [f"{where}: {seconds}" for where, seconds in durations
              if seconds is not None and not 0 < seconds <= MAX_DURATION]  # fmt: skip
    if policy.health.interval < 0.1:
        found.append("health.interval: spins")
    url = policy.state.url.get_secret_value() if policy.state.url else None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix:")):
        found.append("state.url: not a Redis URL")
    if isinstance(policy.version, bool):
        found.append("version: a bool")
    try:
        compile_plan(policy, "p.yaml")
        policy.model_dump_json().encode("utf-8")
        repr(policy).encode("utf-8")
    except Exception as error:
        found.append(f"compiles or prints with {type(error).__name__}")
    return found


FUZZ_COUNTS: Counter[str] = Counter()
FUZZ_EXAMPLES = int(os.environ.get("ROUTER_POLICY_FUZZ_EXAMPLES", "150"))


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # timed below, so that a slow example is counted as a hang and named
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutants())
def test_mutated_shipped_policies_fail_cleanly_or_load_sane(data: bytes) -> None:
    started = time.perf_counter()
    try:
        policy = parse_policy(decode_source(data, "p.yaml"), "p.yaml", env=ENV)
    except PolicyError as error:
        outcome, problems = "clean error", []
        assert all(issue.line >= 1 for issue in error.issues), error.issues
        str(error).encode("utf-8")
    except Exception as error:  # counted, then reported by the assertion below
        outcome, problems = "traceback", [f"{type(error).__name__}: {error}"]
    else:
        problems = nonsense(policy)
        outcome = "accepted nonsense" if problems else "valid"
    elapsed = time.perf_counter() - started
    if elapsed >= QUICK:
        outcome = "hang"
    FUZZ_COUNTS["tried"] += 1
    FUZZ_COUNTS[outcome] += 1
    assert outcome in ("clean error", "valid"), (outcome, f"{elapsed:.2f} s", problems, data[:300])


def teardown_module() -> None:
    if FUZZ_COUNTS:
        names = ("tried", "clean error", "valid", "traceback", "accepted nonsense", "hang")
        counts = ", ".join(f"{name} {FUZZ_COUNTS[name]}" for name in names)
        print(f"\npolicy fuzz: {counts}")
