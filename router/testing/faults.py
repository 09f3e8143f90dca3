"""Faults a `FakeUpstream` can inject, the rules that scope them, and a short text form.

A fault is a frozen value saying *what* goes wrong; each wire of the fake upstream decides
*how* it looks there (`Fault.context_length()` is OpenAI's `context_length_exceeded`, Anthropic's
"prompt is too long", Bedrock's `ValidationException`). Build faults with the constructors on
`Fault` (`Fault.rate_limited(retry_after=2)`, `Fault.cut(3)`, `Fault.http(502)`, ...) and scope
them with a `FaultRule` (which model, how many requests, which time window, how often).
`router.testing.parse_fault_spec` reads a rule from the command line's text form; scenarios read
their faults through the same models (`router.testing._fault_spec`).

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
    ├── StreamFault          strikes streams only
    │   ├── Cut, Stall, Malformed, NoDone
    │   └── InStreamError    a 200 stream that ends with an error event
    │       ├── OverloadedInStream
    │       └── ExceptionInStream
    └── Reset, Hang, Delay, Latency, SlowFirstToken,
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
    "StreamFault",
    "Truncated",
    "bedrock_error_name",
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
class StreamFault(Fault):
    """A fault only a streamed request meets; others are served as if it were not there."""

    @property
    def stream_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Cut(StreamFault):
    after_chunks: int


@dataclass(frozen=True, slots=True)
class Stall(StreamFault):
    after_chunks: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Malformed(StreamFault):
    after_chunks: int


@dataclass(frozen=True, slots=True)
class NoDone(StreamFault):
    pass


@dataclass(frozen=True, slots=True)
class InStreamError(StreamFault):
    """A stream that, after `after_chunks` events, reports an error in-band and ends."""

    after_chunks: int


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
