"""The policy language: frozen pydantic models, one per section of the YAML file.

Defaults here are the documented defaults (README, "Policy reference"). Cross-references
(route -> target -> provider) are checked by the loader, which knows where each name sits
in the file.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from router._registry import RegisteredName, Registry
from router.errors import ErrorKind
from router.logs import HIDDEN
from router.resilience.window import TripRule

__all__ = [
    "BreakerSpec",
    "BudgetSpec",
    "Capabilities",
    "Duration",
    "FailbackSpec",
    "FailoverSpec",
    "GatewayKeySpec",
    "GatewaySpec",
    "HealthSpec",
    "KeyBudgetSpec",
    "LatencyBudget",
    "LimitsSpec",
    "Policy",
    "Price",
    "ProviderSpec",
    "ProviderTypeName",
    "RetryBudgetSpec",
    "RetrySpec",
    "RouteSpec",
    "RuleSpec",
    "RuleValue",
    "StateSpec",
    "StoreName",
    "StrategyName",
    "TargetRef",
    "TargetSpec",
    "format_duration",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_DIVISORS = {"ms": 1000.0}
_UNIT_FACTORS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 86_400.0
"""The longest duration a policy may give, in seconds: a day (longer is a typo, or an attack)."""


def parse_duration(value: Any) -> float:
    """`250ms`, `30s`, `2m`, `1h` -> seconds, at most a day.

    A bare number is refused: its unit would be a guess.
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            number, unit = float(match.group(1)), match.group(2)
            # Divide for milliseconds: 700 * 0.001 is not 0.7 in binary floating point.
            divisor, factor = _UNIT_DIVISORS.get(unit), _UNIT_FACTORS.get(unit, 1.0)
            seconds = number / divisor if divisor else number * factor
            if not seconds <= MAX_DURATION:  # also a number of 400 digits, which is infinite
                raise ValueError("too long: a duration is at most 24h")
            return seconds
    raise ValueError(f"expected a duration such as 250ms, 30s, 2m or 1h, got {value!r}")


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration`, so a dumped policy validates again."""
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$", "examples": ["250ms", "30s", "2m"]}
    ),
]


def _at_least(minimum: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if seconds < minimum:
            raise ValueError(f"must be at least {format_duration(minimum)}")
        return seconds

    return AfterValidator(check)


def _at_most(maximum: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if seconds > maximum:
            raise ValueError(f"must be at most {format_duration(maximum)}")
        return seconds

    return AfterValidator(check)


Period = Annotated[Duration, _at_least(0.001)]
"""A duration that must not be zero: a timeout, a window (at least 1ms)."""
Interval = Annotated[Duration, _at_least(0.1)]
"""How often something repeats in the background: at least 100ms, so that it never spins."""


def _not_a_bool(value: Any) -> Any:
    # YAML's `true` is a Python bool, which is an int: `rpm: true` would be one request a minute.
    if isinstance(value, bool):
        raise ValueError("expected a number, not true or false")
    return value


def _finite(value: Any) -> Any:
    # Before the range is checked, whose message would make no sense for .nan.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]
"""A whole number written as one (never `true`)."""
Amount = Annotated[float, BeforeValidator(_finite), BeforeValidator(_not_a_bool), AllowInfNan(False)]
"""A finite number written as one (never `true`, `.inf`, `.nan` or `1e400`)."""


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class Masked(str):
    """A string that is, or holds, a secret: itself to every use but `repr`, which shows `shown`
    (so does the repr of a model or a dict holding it), and a model's JSON dump, which shows it too."""

    shown: str

    def __new__(cls, value: str, shown: str = HIDDEN) -> Masked:
        masked = super().__new__(cls, value)
        masked.shown = shown
        return masked

    def __repr__(self) -> str:
        return repr(self.shown)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Masked, (str(self), self.shown))


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:{HIDDEN}@{host}"))


def _http_url(url: str) -> str:
    """An http(s) URL with a host; the message never quotes it (it may hold a password)."""
    if not _is_url(url, ("http", "https"), needs_host=True):
        raise ValueError(
            "expected an http:// or https:// URL with a host, such as https://api.example.com/v1"
        )
    shown = _without_password(url)
    return url if shown == url else Masked(url, shown)


def _redis_url(url: SecretStr) -> SecretStr:
    if not _is_url(url.get_secret_value(), ("redis", "rediss", "unix"), needs_host=False):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return url


def _is_url(url: str, schemes: tuple[str, ...], *, needs_host: bool) -> bool:
    if not url.isprintable() or " " in url:
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    if parts.scheme not in schemes:
        return False
    return bool(parts.hostname) if needs_host else bool(parts.netloc or parts.path)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _headers(headers: dict[str, str]) -> dict[str, str]:
    """Header names are HTTP tokens; a value never holds a line break (it would start a header of its
    own). Values are secrets (an `x-api-key`, a bearer token): `Masked`."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header {name!r}: a header name is letters, digits and !#$%&'*+-.^_`|~")
        if any(char in value for char in "\r\n\x00"):
            raise ValueError(f"header {name!r}: a value must not contain a line break or NUL")
    return {name: Masked(value) for name, value in headers.items()}


def _shown(value: Any) -> Any:
    """What a JSON dump shows of a value that may be `Masked`."""
    if isinstance(value, dict):
        return {name: _shown(item) for name, item in value.items()}
    return value.shown if isinstance(value, Masked) else value


HttpUrl = Annotated[str, AfterValidator(_http_url), PlainSerializer(_shown, when_used="json")]
RedisUrl = Annotated[SecretStr, AfterValidator(_redis_url)]
Headers = Annotated[dict[str, str], AfterValidator(_headers), PlainSerializer(_shown, when_used="json")]
ModelName = Annotated[str, AfterValidator(_not_blank)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerSpec(_Spec):
    """When a target's breaker opens and how it recovers: the same rule in one process and in a fleet."""

    fail_max: Count = Field(
        5, ge=1, le=1_000_000, description="Failures in a row that open it, whatever the volume."
    )
    failure_rate: Amount = Field(
        0.5, gt=0, le=1, description="Share of failed calls within `window` that opens the breaker..."
    )
    min_calls: Count = Field(
        20, ge=1, le=1_000_000, description="...once the window holds at least this many calls."
    )
    window: Period = Field(60.0, description="The sliding window over which calls and failures count.")
    min_workers: Count = Field(
        1,
        ge=1,
        le=10_000,
        description="Shared state: distinct workers that must report failures before a trip.",
    )
    reset_timeout: Period = Field(5.0, description="How long an open breaker waits before one probe.")
    max_reset_timeout: Period = Field(
        20.0,
        description="Cap of the open period, which doubles per re-trip.",
    )
    success_threshold: Count = Field(
        1, ge=1, le=1_000, description="Probe successes that close a half-open breaker."
    )

    def rule(self) -> TripRule:
        return TripRule(
            consecutive=self.fail_max,
            failure_rate=self.failure_rate,
            min_calls=self.min_calls,
            window=self.window,
            min_workers=self.min_workers,
            reset_timeout=self.reset_timeout,
            max_reset_timeout=self.max_reset_timeout,
        )


class LimitsSpec(_Spec):
    rpm: Count | None = Field(None, ge=1, le=10**9, description="Requests per minute, per process.")
    tpm: Count | None = Field(
        None, ge=1, le=10**12, description="Tokens per minute (estimated, then reconciled), per process."
    )
    max_concurrency: Count | None = Field(None, ge=1, le=1_000_000, description="Calls in flight at once.")


class ProviderTypeName(RegisteredName):
    """A provider type: built in, or registered by the user (`router.providers.registry`)."""

    @staticmethod
    def registry() -> Registry[Any]:
        # Imported when a policy is validated, not with this module: the adapters that the
        # registry's entries build import this module.
        from router.providers.registry import PROVIDER_TYPES

        return PROVIDER_TYPES


class ProviderSpec(_Spec):
    type: ProviderTypeName
    base_url: HttpUrl | None = Field(
        None, description="API base URL; for azure_openai, the resource endpoint."
    )
    api_key: SecretStr | None = None
    api_keys: list[SecretStr] | None = Field(
        None,
        min_length=1,
        description="A key pool: round-robin, a 429 moves to the next key, a 401 benches one.",
    )
    organization: str | None = None
    api_version: str | None = Field(None, description="azure_openai only, e.g. 2024-10-21.")
    region: str | None = Field(None, description="bedrock only, e.g. us-east-1.")
    project: str | None = Field(None, description="vertex only: the Google Cloud project id.")
    location: str | None = Field(
        None, description="vertex only: the region, e.g. us-central1 (default: global)."
    )
    credentials_file: str | None = Field(
        None,
        description="vertex only: a service-account JSON key file (default: Google's credential chain).",
    )
    thinking_budget: int | None = Field(
        None,
        ge=-1,
        le=1_000_000,
        description="gemini and vertex only: thinking tokens per call (0: none, -1: the model decides); "
        "a call's reasoning_effort overrides it.",
    )
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    headers: Headers = Field(default_factory=dict)
    connect_timeout: Period = 5.0
    max_response_bytes: Count = Field(
        16 * 1024 * 1024,
        ge=1024,
        le=2**31,
        description="The most bytes one answer may hold, decompressed, streams included: more ends the "
        "call as a server_error (a failover), having used no more memory than this.",
    )
    transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="HTTP transport under the openai/anthropic SDK: aiohttp (about 1.4x the calls/s at "
        "high concurrency) or httpx, the SDK's own (also used when the environment sets a proxy). "
        "Ignored by bedrock.",
    )
    limits: LimitsSpec = LimitsSpec()
    breaker: BreakerSpec = BreakerSpec()

    @model_validator(mode="after")
    def _fields_for_type(self) -> ProviderSpec:
        from router.providers.registry import spec_problem  # see ProviderTypeName

        problem = spec_problem(self)
        if problem:
            raise ValueError(problem)
        if self.api_key and self.api_keys:
            raise ValueError("give api_key or api_keys, not both")
        return self

    def api_key_values(self) -> list[str]:
        """The configured API keys, in pool order (empty: the provider's default or none)."""
        if self.api_keys:
            return [key.get_secret_value() for key in self.api_keys]
        return [self.api_key.get_secret_value()] if self.api_key else []


class Price(_Spec):
    input: Amount = Field(0.0, ge=0, le=1_000_000, description="USD per million input tokens.")
    output: Amount = Field(0.0, ge=0, le=1_000_000, description="USD per million output tokens.")


class Capabilities(_Spec):
    streaming: bool = True
    tools: bool = False
    prefill: bool = Field(False, description="Accepts a trailing assistant message to continue.")


class TargetSpec(_Spec):
    provider: str
    model: ModelName
    price: Price | None = Field(
        None,
        description="Default: the price genai-prices knows for the provider type and model, else none "
        "(free).",
    )
    context_window: Count | None = Field(
        None, ge=1, le=10**9, description="Input + output tokens the model accepts."
    )
    capabilities: Capabilities = Capabilities()
    tier: str = "default"


class TargetRef(_Spec):
    target: str
    weight: Amount = Field(1.0, gt=0, le=1_000_000)


class LatencyBudget(_Spec):
    total: Period = Field(60.0, description="Deadline across all retries and failovers.")
    per_attempt: Period | None = Field(None, description="Cap of one call.")
    first_token: Period | None = Field(None, description="Cap on the wait for the first token.")
    idle: Period | None = Field(None, description="Cap on the silence between two stream chunks.")


# The defaults are the kinds' own (see `ErrorKind`).
_RETRY_ON = tuple(kind for kind in ErrorKind if kind.retried_by_default)
_FAILOVER_ON = tuple(kind for kind in ErrorKind if kind.fails_over_by_default)


class RetrySpec(_Spec):
    attempts: Count = Field(
        2, ge=1, le=100, description="Calls to one target per request, the first included."
    )
    backoff_base: Duration = 0.25
    backoff_max: Duration = 5.0
    jitter: Literal["full", "none"] = "full"
    honor_retry_after: bool = True
    on: tuple[ErrorKind, ...] = Field(_RETRY_ON, description="Error kinds retried on the same target.")


class FailoverSpec(_Spec):
    on: tuple[ErrorKind, ...] = Field(
        _FAILOVER_ON, description="Error kinds that move on to the next target."
    )


FailbackMode = Literal["immediate", "after", "ramp"]


class StrategyName(RegisteredName):
    """A route strategy: built in, or registered by the user (`router.strategies`)."""

    @staticmethod
    def registry() -> Registry[Any]:
        from router.strategies import STRATEGIES  # see ProviderTypeName

        return STRATEGIES


StreamRecovery = Literal["continue", "restart", "raise"]


class FailbackSpec(_Spec):
    """How traffic returns to a target that has recovered (breaker closed, health good again)."""

    mode: FailbackMode = "immediate"
    healthy_probes: Count = Field(2, ge=1, le=1_000, description="`after`: good probes in a row needed.")
    healthy_for: Duration = Field(0.0, description="`after`: how long the target must have been healthy.")
    ramp: Period = Field(60.0, description="`ramp`: the time over which its share grows from 0 to all.")


RuleValue = str | bool | int | float


class RuleSpec(_Spec):
    """Where a request goes when its metadata matches: every key of `when` holds the value (or one of
    the values) given."""

    when: dict[str, RuleValue | list[RuleValue]] = Field(
        min_length=1, description="Metadata key -> a value, or a list of values any of which matches."
    )
    targets: list[str | TargetRef] = Field(min_length=1, description="The targets in place of the route's.")
    strategy: StrategyName | None = Field(None, description="Default: the route's.")


class RouteSpec(_Spec):
    targets: list[str | TargetRef] = Field(min_length=1, description="Primary first, then secondaries.")
    rules: list[RuleSpec] = Field(
        default_factory=list,
        description="Routing on the request's metadata: the first rule that matches picks the targets, "
        "else the route's own.",
    )
    strategy: StrategyName = StrategyName("ordered")
    latency_budget: LatencyBudget = LatencyBudget()
    retry: RetrySpec = RetrySpec()
    failover: FailoverSpec = FailoverSpec()
    hedge_after: Period | None = Field(None, description="Start the next target if no first token by then.")
    failback: FailbackSpec = FailbackSpec()
    max_cost: Amount | None = Field(
        None, gt=0, description="USD; targets whose estimate exceeds it are skipped."
    )
    stream_recovery: StreamRecovery | None = Field(
        None,
        description="stream(), after output began: continue the text on the next target that declares "
        "prefill (else restart, announced by a StreamRestart), restart on the next target, or raise "
        "StreamBroken. Default: continue. complete() always restarts: its caller saw nothing.",
    )


class RetryBudgetSpec(_Spec):
    ratio: Amount = Field(0.2, ge=0, le=1_000, description="Retries allowed per request, over the window.")
    min_retries: Count = Field(
        10, ge=0, le=1_000_000, description="Retries always allowed per window, however few requests."
    )
    # Counted in one-second slots: a window is at most an hour.
    window: Annotated[Period, _at_most(3600.0)] = 10.0


class HealthSpec(_Spec):
    enabled: bool = False
    interval: Interval = Field(
        10.0,
        description="One probe per target per interval, across the fleet; a healed target is back within one "
        "(with `probe: auto`).",
    )
    timeout: Period = 5.0
    probe: Literal["auto", "models", "completion"] = Field(
        "auto",
        description="models: list models (free, but says nothing about chat); completion: a one-token chat "
        "call to the target's model, whose success also closes its breaker; auto: completion while the "
        "target's breaker is not closed or its health is unhealthy, models otherwise.",
    )
    unhealthy_after: Count = Field(
        3, ge=1, le=1_000, description="Failed probes in a row that mark a target unhealthy."
    )
    healthy_after: Count = Field(
        2,
        ge=1,
        le=1_000,
        description="Good probes in a row that mark it healthy again (one completion probe will do).",
    )
    ttl: Period | None = Field(
        None, description="Age at which a verdict becomes unknown; default 3 intervals."
    )


class BudgetSpec(_Spec):
    """A spending limit, in USD per hour or per day, on one route or on one tier, for the whole fleet."""

    route: str | None = None
    tier: str | None = None
    usd: Amount = Field(gt=0)
    per: Literal["hour", "day"] = "hour"
    when_spent: Literal["shift", "raise"] = Field(
        "shift",
        description="shift: skip the targets it covers (a route budget spares the route's cheapest tier), so "
        "traffic moves to cheaper ones; raise: BudgetExceeded.",
    )

    @model_validator(mode="after")
    def _one_scope(self) -> BudgetSpec:
        if (self.route is None) == (self.tier is None):
            raise ValueError("a budget covers exactly one route or one tier")
        return self


class StoreName(RegisteredName):
    """A state store backend: built in, or registered by the user (`router.state.registry`)."""

    @staticmethod
    def registry() -> Registry[Any]:
        from router.state.registry import STORES  # see ProviderTypeName

        return STORES


class StateSpec(_Spec):
    backend: StoreName = StoreName("memory")
    url: RedisUrl | None = Field(None, description="redis only, e.g. ${REDIS_URL}.")
    namespace: str = "router"
    socket_timeout: Period = Field(0.25, description="Redis calls give up after this; the worker carries on.")
    reconcile_interval: Interval = Field(5.0, description="How often a worker re-reads the fleet's state.")

    @model_validator(mode="after")
    def _fields_for_backend(self) -> StateSpec:
        needs = StoreName.registry()[self.backend].needs
        missing = [field for field in needs if getattr(self, field) is None]
        if missing:
            raise ValueError(f"the {self.backend} backend needs {' and '.join(missing)}")
        return self


class Policy(_Spec):
    """A whole policy file."""

    version: Annotated[Literal[1], BeforeValidator(_not_a_bool)] = 1
    providers: dict[str, ProviderSpec]
    targets: dict[str, TargetSpec]
    routes: dict[str, RouteSpec]
    budgets: dict[str, BudgetSpec] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Short names for routes or targets: `fast: chat`, `mini: gpt-4o-mini`.",
    )
    retry_budget: RetryBudgetSpec = RetryBudgetSpec()
    health: HealthSpec = HealthSpec()
    state: StateSpec = StateSpec()
    gateway: GatewaySpec | None = Field(None, description="`router serve`: callers' keys, HTTP limits.")


ControlName = Literal["targets", "deadline", "attempts", "max_cost", "stream_recovery", "metadata", "trail"]
"""The per-request controls a gateway key may use (`router` in the body, `x-router-*` headers)."""
_CONTROLS: tuple[ControlName, ...] = ControlName.__args__  # type: ignore[attr-defined]


class KeyBudgetSpec(_Spec):
    """What one key may spend, in USD per hour or per day, for the whole fleet."""

    usd: Amount = Field(gt=0, le=1_000_000_000)
    per: Literal["hour", "day"] = "hour"


def _long_secret(secret: SecretStr) -> SecretStr:
    if len(secret.get_secret_value()) < 16:
        raise ValueError("a key is at least 16 characters (a short one can be guessed)")
    return secret


GatewayKey = Annotated[SecretStr, AfterValidator(_long_secret)]


class GatewayKeySpec(_Spec):
    """One caller's key (`router serve`): the routes it may name, its request rate and its budget."""

    key: GatewayKey = Field(description="The secret the caller sends, e.g. ${TEAM_A_KEY}.")
    routes: list[str] | None = Field(
        None, description="Routes, aliases or provider:model addresses it may name; all when omitted."
    )
    rpm: Count | None = Field(None, ge=1, le=10**9, description="Requests per minute, for the whole fleet.")
    budget: KeyBudgetSpec | None = None
    control: list[ControlName] = Field(
        default_factory=lambda: list(_CONTROLS), description="The per-request controls it may use."
    )


class GatewaySpec(_Spec):
    """`router serve`: who may call (no `keys`: anyone who can reach it) and the bounds on what they send."""

    keys: dict[str, GatewayKeySpec] = Field(default_factory=dict, max_length=10_000)
    admin_key: GatewayKey | None = Field(None, description="Needed by /admin/*; without it they answer 404.")
    max_body: Count = Field(4 * 1024 * 1024, ge=1024, le=1024**3, description="Bytes of a request body.")
    max_header: Count = Field(8190, ge=1024, le=65_536, description="Bytes of a header line.")
    read_timeout: Period = Field(30.0, description="How long a client may take to send its request body.")
    keepalive: Period = Field(75.0, description="How long an idle connection is kept open.")

    @model_validator(mode="after")
    def _distinct_keys(self) -> GatewaySpec:
        secrets = [spec.key.get_secret_value() for spec in self.keys.values()]
        if self.admin_key is not None:
            secrets.append(self.admin_key.get_secret_value())
        if len(set(secrets)) != len(secrets):
            raise ValueError("two keys (or a key and the admin key) hold the same secret")
        return self
