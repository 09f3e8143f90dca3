"""Faults a `FakeUpstream` can inject, the rules that scope them, and a short text form.

A fault is a frozen value saying *what* goes wrong; each wire of the fake upstream decides
*how* it looks there (`Fault.context_length()` is OpenAI's `context_length_exceeded`, Anthropic's
"prompt is too long", Bedrock's `ValidationException`). Build faults with the constructors on
`Fault` (`Fault.rate_limited(retry_after=2)`, `Fault.cut(3)`, `Fault.http(502)`, ...) and scope
them with a `FaultRule` (which model, how many requests, which time window, how often).
`parse_fault_spec` reads rules from the command line.

Faults on streams (`cut`, `stall`, `malformed`, `no_done`, the in-stream errors) only apply to
streamed requests (`slow_first_token` delays a whole non-streamed answer); `reject_prefill` only
to conversations ending with an assistant message. A request a fault does not apply to is
served normally and counts towards neither the rule's `after` nor its `times`.

    Fault
    ├── Rejection            an error answer instead of a reply
    │   ├── HttpError        any status, in the wire's error shape
    │   ├── ContextLength    400, the prompt is too long
    │   ├── ContentFilter    400 (Bedrock: a 200 answer stopped by a guardrail)
    │   └── RejectPrefill    400 for a trailing assistant message
    ├── InStreamError        a 200 stream that ends with an error event
    │   ├── OverloadedInStream
    │   └── ExceptionInStream
    └── Reset, Hang, Delay, Latency, SlowFirstToken, Cut, Stall, Malformed, NoDone,
        Html, InvalidJson, EmptyChoices, Truncated, NoFinish,
        GzipBomb, Huge, Endless       hostile bodies: what a bounded reader must stop
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BEDROCK_ERRORS",
    "STREAM_EXCEPTIONS",
    "ContentFilter",
    "ContextLength",
    "Cut",
    "Delay",
    "EmptyChoices",
    "Endless",
    "ExceptionInStream",
    "Fault",
    "FaultRule",
    "FaultSchedule",
    "GzipBomb",
    "Hang",
    "Html",
    "HttpError",
    "Huge",
    "InStreamError",
    "InvalidJson",
    "Latency",
    "Malformed",
    "NoDone",
    "NoFinish",
    "OverloadedInStream",
    "RejectPrefill",
    "Rejection",
    "Reset",
    "SlowFirstToken",
    "Stall",
    "Truncated",
    "bedrock_error_name",
    "parse_fault_spec",
]

# The exceptions Bedrock's ConverseStream can send mid-stream, as `:exception-type` names them.
STREAM_EXCEPTIONS = (
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
    "throttlingException",
    "validationException",
)

BEDROCK_ERRORS: dict[str, tuple[int, str]] = {
    "ValidationException": (400, "Malformed input request, please reformat your input and try again."),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "ResourceNotFoundException": (
        404,
        "Could not resolve the foundation model from the provided model identifier.",
    ),
    "ModelTimeoutException": (408, "Model has timed out in processing the request. Try your request again."),
    "ModelErrorException": (424, "Received error from the model. Try your request again."),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "InternalServerException": (
        500,
        "The system encountered an unexpected error during processing. Try your request again.",
    ),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
    # Sent only where a fault names them: a bare status gets the name above.
    "ModelNotReadyException": (
        429,
        "Model is not ready to serve inference requests. Try your request again.",
    ),
    "ModelStreamErrorException": (424, "An error occurred while streaming the response. Retry your request."),
    "ServiceQuotaExceededException": (400, "Your request exceeds the service quota for your account."),
}
"""Bedrock runtime's errors: each name with its status and the message it comes with. The one table
of them: `Fault.bedrock_error`, the fake upstream's Bedrock wire and the simulation read it."""


def bedrock_error_name(status: int) -> str:
    """The error name Bedrock runtime sends with `status`; one it does not send is named for its
    class (401 is access denied, as 403 is)."""
    for name, (usual, _) in BEDROCK_ERRORS.items():
        if usual == status:
            return name
    if status == 401:
        return "AccessDeniedException"
    return "InternalServerException" if status >= 500 else "ValidationException"


@dataclass(frozen=True, slots=True)
class Fault:
    """Base of every fault; its static methods are the constructors to use."""

    @property
    def name(self) -> str:
        """Short label recorded in the attempt log, e.g. `"http_503"` or `"cut"`."""
        return _snake(type(self).__name__)

    @property
    def stream_only(self) -> bool:
        return False

    # Constructors. Kept here so one import (`Fault`) reaches every kind.

    @staticmethod
    def http(
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
    ) -> HttpError:
        """Any HTTP error status, in the error shape of the wire the request came on.

        `message`, `type` (the error's type as the wire names it: OpenAI `error.type`, Anthropic
        `error.type`, Bedrock's exception name) and `code` (OpenAI's `error.code`) default to
        what that wire sends with the status.
        """
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("Retry-After", _format_seconds(retry_after)))
        if retry_after_ms is not None:
            headers.append(("retry-after-ms", str(int(retry_after_ms))))
        return HttpError(status=status, message=message, type=type, code=code, headers=tuple(headers))

    @staticmethod
    def rate_limited(retry_after: float | None = None, *, retry_after_ms: int | None = None) -> HttpError:
        """429, with `Retry-After` (seconds) and/or `retry-after-ms` headers when given."""
        return Fault.http(429, retry_after=retry_after, retry_after_ms=retry_after_ms)

    @staticmethod
    def server_error() -> HttpError:
        """500."""
        return Fault.http(500)

    @staticmethod
    def unavailable() -> HttpError:
        """503, as an overloaded or down upstream answers."""
        return Fault.http(503)

    @staticmethod
    def overloaded() -> HttpError:
        """529, Anthropic's `overloaded_error`."""
        return Fault.http(529)

    @staticmethod
    def unauthorized() -> HttpError:
        """401: the API key is rejected."""
        return Fault.http(401)

    @staticmethod
    def forbidden() -> HttpError:
        """403: the key may not use this model."""
        return Fault.http(403)

    @staticmethod
    def bedrock_error(name: str, status: int | None = None) -> HttpError:
        """A Bedrock runtime error by name (`"ModelNotReadyException"`: 429, `"ModelErrorException"`:
        424, `"ModelTimeoutException"`: 408, ...), with its usual status unless `status` is given."""
        if status is None:
            if name not in BEDROCK_ERRORS:
                raise ValueError(
                    f"unknown Bedrock error {name!r}: give its status (known: {sorted(BEDROCK_ERRORS)})"
                )
            status = BEDROCK_ERRORS[name][0]
        return Fault.http(status, type=name)

    @staticmethod
    def context_length(limit: int = 128_000) -> ContextLength:
        """400: the prompt is over the model's `limit` of tokens (each wire says it its own way)."""
        return ContextLength(_count("limit", limit))

    @staticmethod
    def content_filter(category: str = "hate") -> ContentFilter:
        """The prompt trips a content filter in `category`: 400 (Azure's `content_filter` shape on
        OpenAI and Azure; Anthropic's usage-policy refusal); on Bedrock a 200 answer whose
        `stopReason` is `guardrail_intervened`."""
        return ContentFilter(category)

    @staticmethod
    def reset() -> Reset:
        """TCP reset before any response header."""
        return Reset()

    @staticmethod
    def hang() -> Hang:
        """No response at all, until the client gives up or the server stops."""
        return Hang()

    @staticmethod
    def delay(seconds: float) -> Delay:
        """Wait `seconds` before answering normally."""
        return Delay(_non_negative("seconds", seconds))

    @staticmethod
    def latency(mean: float, jitter: float = 0.0) -> Latency:
        """Wait uniformly between `mean - jitter` and `mean + jitter` (seeded), then answer."""
        return Latency(_non_negative("mean", mean), _non_negative("jitter", jitter))

    @staticmethod
    def slow_first_token(seconds: float) -> SlowFirstToken:
        """Stream: headers at once, the first event `seconds` later (non-stream: a delay)."""
        return SlowFirstToken(_non_negative("seconds", seconds))

    @staticmethod
    def cut(after_chunks: int) -> Cut:
        """Stream: close the connection after `after_chunks` events, before the one that finishes."""
        return Cut(_count("after_chunks", after_chunks))

    @staticmethod
    def stall(after_chunks: int, seconds: float) -> Stall:
        """Stream: send nothing for `seconds` after `after_chunks` events, then carry on."""
        return Stall(_count("after_chunks", after_chunks), _non_negative("seconds", seconds))

    @staticmethod
    def malformed(after_chunks: int) -> Malformed:
        """Stream: one event whose JSON is broken after `after_chunks` events, then carry on."""
        return Malformed(_count("after_chunks", after_chunks))

    @staticmethod
    def no_done() -> NoDone:
        """Stream: complete, with the finish and usage, but without the wire's terminator (OpenAI's
        `data: [DONE]`, Anthropic's `message_stop`, Bedrock's `metadata` frame)."""
        return NoDone()

    @staticmethod
    def overloaded_in_stream(after_chunks: int) -> OverloadedInStream:
        """Stream: after `after_chunks` events, an in-band error saying the model is overloaded
        (Anthropic's `event: error` with `overloaded_error`), then the end of the stream."""
        return OverloadedInStream(_count("after_chunks", after_chunks))

    @staticmethod
    def exception_in_stream(name: str, after_chunks: int) -> ExceptionInStream:
        """Stream: after `after_chunks` events, a Bedrock exception frame `name` (one of
        `STREAM_EXCEPTIONS`, e.g. `"throttlingException"`), then the end of the stream."""
        exception = name[:1].lower() + name[1:]
        if exception not in STREAM_EXCEPTIONS:
            raise ValueError(f"unknown stream exception {name!r} (known: {', '.join(STREAM_EXCEPTIONS)})")
        return ExceptionInStream(_count("after_chunks", after_chunks), exception)

    @staticmethod
    def reject_prefill() -> RejectPrefill:
        """400 when the last message is the assistant's (prefill); other requests succeed."""
        return RejectPrefill()

    @staticmethod
    def html() -> Html:
        """200 with an HTML page, as a proxy or captive portal answers."""
        return Html()

    @staticmethod
    def invalid_json() -> InvalidJson:
        """200 `application/json` whose body is cut off mid-object."""
        return InvalidJson()

    @staticmethod
    def empty_choices() -> EmptyChoices:
        """200 with nothing in it: `choices: []`, `content: []` (a stream without content events)."""
        return EmptyChoices()

    @staticmethod
    def truncated() -> Truncated:
        """200 with half the reply, finished for length (`length`, `max_tokens`)."""
        return Truncated()

    @staticmethod
    def no_finish() -> NoFinish:
        """200 with half the reply and no finish reason (a stream: no finish event, then a clean end)."""
        return NoFinish()

    @staticmethod
    def gzip_bomb(size: int = 1 << 30) -> GzipBomb:
        """200 `Content-Encoding: gzip` whose body inflates to the reply after `size` bytes of
        whitespace: about a thousandth of `size` on the wire (a valid answer, if read whole)."""
        return GzipBomb(_count("size", size))

    @staticmethod
    def huge(size: int) -> Huge:
        """200 with a well-formed reply of `size` bytes of text (streams: in 64 KB content events)."""
        return Huge(_count("size", size))

    @staticmethod
    def endless(chunk: int = 64 * 1024, every: float = 0.0) -> Endless:
        """200 that never ends: content events of `chunk` bytes, one each `every` seconds, forever (a
        non-streamed answer: a body that never closes)."""
        return Endless(_count("chunk", chunk), _non_negative("every", every))


@dataclass(frozen=True, slots=True)
class Rejection(Fault):
    """An error answer in place of the reply; the wire renders the status and the body."""


@dataclass(frozen=True, slots=True)
class HttpError(Rejection):
    """An error status; `message`, `type` and `code` left None take the wire's usual ones."""

    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"http_{self.status}"


@dataclass(frozen=True, slots=True)
class ContextLength(Rejection):
    limit: int


@dataclass(frozen=True, slots=True)
class ContentFilter(Rejection):
    category: str


@dataclass(frozen=True, slots=True)
class RejectPrefill(Rejection):
    pass


@dataclass(frozen=True, slots=True)
class Reset(Fault):
    pass


@dataclass(frozen=True, slots=True)
class Hang(Fault):
    pass


@dataclass(frozen=True, slots=True)
class Delay(Fault):
    seconds: float


@dataclass(frozen=True, slots=True)
class Latency(Fault):
    mean: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class SlowFirstToken(Fault):
    seconds: float


@dataclass(frozen=True, slots=True)
class Cut(Fault):
    after_chunks: int

    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Stall(Fault):
    after_chunks: int
    seconds: float

    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Malformed(Fault):
    after_chunks: int

    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class NoDone(Fault):
    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class InStreamError(Fault):
    """A stream that, after `after_chunks` events, reports an error in-band and ends."""

    after_chunks: int

    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class OverloadedInStream(InStreamError):
    pass


@dataclass(frozen=True, slots=True)
class ExceptionInStream(InStreamError):
    exception: str


@dataclass(frozen=True, slots=True)
class Html(Fault):
    pass


@dataclass(frozen=True, slots=True)
class InvalidJson(Fault):
    pass


@dataclass(frozen=True, slots=True)
class EmptyChoices(Fault):
    pass


@dataclass(frozen=True, slots=True)
class Truncated(Fault):
    pass


@dataclass(frozen=True, slots=True)
class NoFinish(Fault):
    pass


@dataclass(frozen=True, slots=True)
class GzipBomb(Fault):
    size: int


@dataclass(frozen=True, slots=True)
class Huge(Fault):
    size: int


@dataclass(frozen=True, slots=True)
class Endless(Fault):
    chunk: int
    every: float = 0.0


@dataclass(frozen=True, slots=True)
class FaultRule:
    """When a fault strikes.

    `model` is a model name or `"*"` for any. Of the requests to a matching model, the first
    `after` pass untouched; then the fault strikes at most `times` times (None: no limit),
    only between `start` and `end` seconds after the upstream started (None: open-ended),
    each time with `probability` (rolled on the upstream's seeded RNG).
    """

    model: str
    fault: Fault
    times: int | None = None
    after: int = 0
    start: float | None = None
    end: float | None = None
    probability: float = 1.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("a fault rule needs a model name or '*'")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times}")
        if self.after < 0:
            raise ValueError(f"after must be >= 0, got {self.after}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")

    def matches_model(self, model: str) -> bool:
        return self.model == "*" or self.model == model

    def in_window(self, elapsed: float) -> bool:
        if self.start is not None and elapsed < self.start:
            return False
        return self.end is None or elapsed < self.end


@dataclass(slots=True)
class _RuleState:
    rule: FaultRule
    seen: int = 0
    fired: int = 0


class FaultSchedule:
    """An upstream's rules, in order, with their counters: which fault strikes a request.

    Shared by the fake upstream and the chaos simulation, so both choose exactly alike; the
    latency a `Latency` fault adds is drawn from the same generator, right after the choice.
    """

    def __init__(self, rules: Iterable[FaultRule], rng: random.Random) -> None:
        self._states = [_RuleState(rule) for rule in rules]
        self._rng = rng

    @property
    def rules(self) -> list[FaultRule]:
        return [state.rule for state in self._states]

    def add(self, rule: FaultRule) -> None:
        self._states.append(_RuleState(rule))

    def clear(self) -> None:
        self._states.clear()

    def choose(
        self, model: str, *, stream: bool, prefill: bool, elapsed: float
    ) -> tuple[Fault | None, float]:
        """The fault striking this request (None: none) and the latency drawn for it.

        Every rule that applies to the request counts it, even when an earlier rule struck.
        """
        chosen: Fault | None = None
        for state in self._states:
            rule = state.rule
            if not rule.matches_model(model) or not _applies(rule.fault, stream, prefill):
                continue
            state.seen += 1
            if chosen is not None or state.seen <= rule.after:
                continue
            if rule.times is not None and state.fired >= rule.times:
                continue
            if not rule.in_window(elapsed):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            state.fired += 1
            chosen = rule.fault
        latency = 0.0
        if isinstance(chosen, Latency):
            latency = max(0.0, self._rng.uniform(chosen.mean - chosen.jitter, chosen.mean + chosen.jitter))
        return chosen, latency


def _applies(fault: Fault, stream: bool, prefill: bool) -> bool:
    """Stream faults strike only streams; a prefill rejection only a conversation ending in one."""
    if fault.stream_only and not stream:
        return False
    return prefill if isinstance(fault, RejectPrefill) else True


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _non_negative(what: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _count(what: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return int(value)


# --- The text form ---------------------------------------------------------------------------

_SCOPE_KEYS = ("times", "after", "start", "end", "p", "probability")


def parse_fault_spec(text: str) -> FaultRule:
    """Read one rule from its short text form (the CLI's `--fault MODEL=SPEC`).

    Grammar::

        RULE   := MODEL "=" KIND [":" PARAM ("," PARAM)*]
        MODEL  := a model name (may contain ":"), or "*" for any model
        PARAM  := VALUE                 positional argument of KIND, in order
                | KEY "=" VALUE         named argument of KIND, or a scope key
        scope  := times=N | after=N | start=DUR | end=DUR | p=FLOAT (alias probability=)
        DUR    := NUMBER ["ms" | "s" | "m"]      (a bare number is seconds)

    Kinds and their arguments:

        400..599                      status in the wire's error shape; takes
                                      retry_after=DUR and retry_after_ms=N (headers)
        rate_limited / server_error / unavailable / overloaded / unauthorized / forbidden
                                      429 / 500 / 503 / 529 / 401 / 403 (same arguments as above)
        outage:DUR                    503 for DUR from `start` (default 0), then healthy
        reset, hang, no_done, reject_prefill, html, invalid_json, empty_choices, truncated, no_finish
        gzip_bomb[:SIZE]              huge:SIZE                     endless[:CHUNK]      (bytes)
        delay:DUR                     slow_first_token:DUR          latency:MEAN[,JITTER]
        cut:N                         stall:N,DUR                   malformed:N
        context_length[:LIMIT]        content_filter[:CATEGORY]
        overloaded_in_stream:N        exception_in_stream:NAME,N    bedrock_error:NAME[,STATUS]

    Examples: `gpt-4o=503`, `gpt-4o=500:times=1`, `gpt-4o=429:retry_after=2`,
    `gpt-4o=reset`, `gpt-4o=hang`, `gpt-4o=outage:10s`, `gpt-4o=cut:3`,
    `*=latency:200ms,50ms`, `*=500:p=0.1`, `ft:gpt-4o:acme=stall:2,5s,after=1`,
    `claude-3-5-haiku=overloaded_in_stream:3`, `anthropic.claude-3-haiku-20240307-v1:0=
    exception_in_stream:throttlingException,2` (written on one line).

    Raises ValueError naming the offending part when the text does not parse.
    """
    model, sep, rest = text.partition("=")
    model = model.strip()
    if not sep or not model:
        raise ValueError(f"fault spec {text!r}: expected MODEL=KIND[:ARGS], e.g. 'gpt-4o=503'")
    kind, _, arg_text = rest.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if not kind:
        raise ValueError(f"fault spec {text!r}: missing the fault kind after '='")
    positional: list[str] = []
    named: dict[str, str] = {}
    for raw in arg_text.split(",") if arg_text.strip() else []:
        part = raw.strip()
        if not part:
            raise ValueError(f"fault spec {text!r}: empty argument")
        key, eq, value = part.partition("=")
        if eq:
            key = key.strip().lower().replace("-", "_")
            if key in named:
                raise ValueError(f"fault spec {text!r}: {key!r} given twice")
            named[key] = value.strip()
        elif named:
            raise ValueError(f"fault spec {text!r}: positional argument {part!r} after a named one")
        else:
            positional.append(part)

    scope = {key: named.pop(key) for key in _SCOPE_KEYS if key in named}
    try:
        fault, window_end = _build_fault(kind, positional, named)
        times = _parse_int(scope["times"], "times") if "times" in scope else None
        after = _parse_int(scope["after"], "after") if "after" in scope else 0
        start = parse_duration(scope["start"]) if "start" in scope else None
        end = parse_duration(scope["end"]) if "end" in scope else None
        probability_text = scope.get("p", scope.get("probability"))
        probability = _parse_float(probability_text, "p") if probability_text is not None else 1.0
        if window_end is not None:
            if end is not None:
                raise ValueError("outage takes its length, not end=")
            end = (start or 0.0) + window_end
        return FaultRule(
            model, fault, times=times, after=after, start=start, end=end, probability=probability
        )
    except ValueError as exc:
        raise ValueError(f"fault spec {text!r}: {exc}") from None


def parse_duration(text: str) -> float:
    """`"250ms"`, `"2s"`, `"1.5m"` or a bare number of seconds, as seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if match is None:
        raise ValueError(f"bad duration {text!r} (expected e.g. 250ms, 2s, 1.5m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def _parse_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _parse_float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None


_NAMED_STATUS = {
    "rate_limited": 429,
    "server_error": 500,
    "unavailable": 503,
    "overloaded": 529,
    "unauthorized": 401,
    "forbidden": 403,
}
_NO_ARGS = {
    "reset": Fault.reset,
    "hang": Fault.hang,
    "no_done": Fault.no_done,
    "reject_prefill": Fault.reject_prefill,
    "html": Fault.html,
    "invalid_json": Fault.invalid_json,
    "empty_choices": Fault.empty_choices,
    "truncated": Fault.truncated,
    "no_finish": Fault.no_finish,
}


def _build_fault(kind: str, positional: list[str], named: dict[str, str]) -> tuple[Fault, float | None]:
    """The fault for `kind`, and the outage length when the kind is a window."""

    def take(names: tuple[str, ...], *, positional_ok: int, required: int = 0) -> list[str | None]:
        """Arguments `names` of `kind`, the first `positional_ok` of which may be positional."""
        if len(positional) > positional_ok:
            raise ValueError(
                f"{kind} takes at most {positional_ok} positional argument(s), got {len(positional)}"
            )
        values: list[str | None] = [*positional, *([None] * (len(names) - len(positional)))]
        for index, key in enumerate(names):
            if key in named:
                if values[index] is not None:
                    raise ValueError(f"{key} given twice")
                values[index] = named.pop(key)
        if named:
            raise ValueError(f"unknown argument(s) for {kind}: {', '.join(sorted(named))}")
        missing = [names[i] for i in range(required) if values[i] is None]
        if missing:
            raise ValueError(f"{kind} needs {', '.join(missing)}")
        return values

    status = int(kind) if kind.isdigit() else _NAMED_STATUS.get(kind)
    if status is not None:
        if not 400 <= status <= 599:
            raise ValueError(f"status must be within 400..599, got {status}")
        retry_after, retry_after_ms = take(("retry_after", "retry_after_ms"), positional_ok=0)
        return (
            Fault.http(
                status,
                retry_after=parse_duration(retry_after) if retry_after is not None else None,
                retry_after_ms=_parse_int(retry_after_ms, "retry_after_ms")
                if retry_after_ms is not None
                else None,
            ),
            None,
        )
    if kind in _NO_ARGS:
        take((), positional_ok=0)
        return _NO_ARGS[kind](), None
    if kind in ("gzip_bomb", "huge", "endless"):
        required = 1 if kind == "huge" else 0
        (amount,) = take(("chunk" if kind == "endless" else "size",), positional_ok=1, required=required)
        build = {"gzip_bomb": Fault.gzip_bomb, "huge": Fault.huge, "endless": Fault.endless}[kind]
        return (build(_parse_int(amount, "size")) if amount else build()), None  # type: ignore[operator]
    if kind == "outage":
        (length,) = take(("for",), positional_ok=1, required=1)
        assert length is not None
        return Fault.unavailable(), parse_duration(length)
    if kind in ("delay", "slow_first_token"):
        (seconds,) = take(("seconds",), positional_ok=1, required=1)
        assert seconds is not None
        build = Fault.delay if kind == "delay" else Fault.slow_first_token
        return build(parse_duration(seconds)), None
    if kind == "latency":
        mean, jitter = take(("mean", "jitter"), positional_ok=2, required=1)
        assert mean is not None
        return Fault.latency(parse_duration(mean), parse_duration(jitter) if jitter else 0.0), None
    if kind in ("cut", "malformed"):
        (after_chunks,) = take(("after_chunks",), positional_ok=1, required=1)
        assert after_chunks is not None
        count = _parse_int(after_chunks, "after_chunks")
        return (Fault.cut(count) if kind == "cut" else Fault.malformed(count)), None
    if kind == "stall":
        after_chunks, seconds = take(("after_chunks", "seconds"), positional_ok=2, required=2)
        assert after_chunks is not None and seconds is not None
        return Fault.stall(_parse_int(after_chunks, "after_chunks"), parse_duration(seconds)), None
    if kind == "context_length":
        (limit,) = take(("limit",), positional_ok=1)
        return (Fault.context_length(_parse_int(limit, "limit")) if limit else Fault.context_length()), None
    if kind == "content_filter":
        (category,) = take(("category",), positional_ok=1)
        return (Fault.content_filter(category) if category else Fault.content_filter()), None
    if kind == "overloaded_in_stream":
        (after_chunks,) = take(("after_chunks",), positional_ok=1, required=1)
        assert after_chunks is not None
        return Fault.overloaded_in_stream(_parse_int(after_chunks, "after_chunks")), None
    if kind == "exception_in_stream":
        name, after_chunks = take(("name", "after_chunks"), positional_ok=2, required=2)
        assert name is not None and after_chunks is not None
        return Fault.exception_in_stream(name, _parse_int(after_chunks, "after_chunks")), None
    if kind == "bedrock_error":
        name, status_text = take(("name", "status"), positional_ok=2, required=1)
        assert name is not None
        return Fault.bedrock_error(name, _parse_int(status_text, "status") if status_text else None), None
    raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(_KNOWN_KINDS)})")


_KNOWN_KINDS = (
    "400..599",
    *_NAMED_STATUS,
    "outage",
    *_NO_ARGS,
    "delay",
    "slow_first_token",
    "latency",
    "cut",
    "stall",
    "malformed",
    "context_length",
    "content_filter",
    "overloaded_in_stream",
    "exception_in_stream",
    "bedrock_error",
)
