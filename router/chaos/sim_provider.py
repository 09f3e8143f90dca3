"""The fake upstream in process and in virtual time: what `router simulate` puts behind the policy.

`SimulatedUpstream` plays a scenario's fault schedule as `FakeUpstream` does: the same rules,
tried in the same order with the same counters (`after`, `times`), windows timed from the start
of the load, and one RNG seeded with the scenario's seed for probabilities and latency. Its
`provider` answers for one provider of the policy the way that provider's adapter reports what
the fake upstream sends on its wire:

- an error status -> the `ProviderError` kind the adapter gives it, with the status and the
  Retry-After; a context-length, content-filter or prefill rejection -> its kind;
- a reset -> `connection`; a hang -> silence until the router's timeout; delays, slow first
  tokens and latency -> sleeps on the clock (plus `CALL_LATENCY` for every call);
- streams -> the wire's events (OpenAI's role delta, Anthropic's message_start, ...), a word of
  the answer per event, and a fault where the fake upstream strikes, counted in events: a cut
  ends the connection (`connection`), a stall goes silent, a malformed event is a warning, an
  in-stream error is the adapter's kind, a missing terminator loses what only it carries;
- usage as the fake upstream counts it: characters // 4 + 1 for the prompt and for the answer.

Every call is logged as the fake upstream logs it (`UpstreamCall`), so the report is the same.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from router.chaos.recording import UpstreamCall
from router.chaos.upstream import reply_for
from router.clock import Clock
from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers._http import retry_after
from router.providers.base import Call, Chunk, Provider, Reply
from router.providers.kinds import (
    BEDROCK_ERROR_CODES,
    anthropic_kind,
    bedrock_kind,
    google_kind,
    kind_for_status,
)
from router.providers.registry import PROVIDER_TYPES
from router.results import Usage
from router.testing.faults import (
    ContentFilter,
    ContextLength,
    Cut,
    Delay,
    EmptyChoices,
    ExceptionInStream,
    Fault,
    FaultRule,
    FaultSchedule,
    Hang,
    Html,
    HttpError,
    InStreamError,
    InvalidJson,
    Latency,
    Malformed,
    NoDone,
    Rejection,
    RejectPrefill,
    Reset,
    SlowFirstToken,
    Stall,
    Truncated,
    bedrock_error_name,
)
from router.testing.wires.base import content_text, continuation, estimate_tokens, split_words
from router.testing.wires.bedrock import GUARDRAIL_MESSAGE
from router.testing.wires.google import GOOGLE_STATUS, IN_STREAM_ERRORS

__all__ = ["CALL_LATENCY", "SimulatedProvider", "SimulatedUpstream"]

CALL_LATENCY = 0.002
"""Seconds every call to the simulated upstream takes before its faults' own delays: about what a
call to the fake upstream on loopback, through the SDK, takes in a real chaos run."""

_FOREVER = 1e9

# The error types the fake upstream's Anthropic wire sends for each in-stream exception, as the
# Anthropic adapter classifies them.
_ANTHROPIC_IN_STREAM = {
    "internalServerException": ErrorKind.SERVER_ERROR,
    "modelStreamErrorException": ErrorKind.SERVER_ERROR,
    "serviceUnavailableException": ErrorKind.SERVER_ERROR,
    "throttlingException": ErrorKind.RATE_LIMITED,
    "validationException": ErrorKind.BAD_REQUEST,
}


@dataclass(frozen=True, slots=True)
class _Wire:
    """What of a wire shapes the answer the router gets.

    `name` as the fake upstream logs it: openai, azure, anthropic, bedrock or google. `usage_event`: an
    OpenAI-wire stream ends with a chunk of usage (when the adapter asks for it; some presets
    cannot). `filters_in_band`: a tripped content filter is a 200 answer (Bedrock's guardrail,
    Google's blocked prompt, which its adapter raises as a content_filter all the same).
    """

    name: str
    usage_event: bool = False

    @property
    def finish_at_end(self) -> bool:
        """The adapter hands on the finish when the stream ends, not at the event that finishes."""
        return self.name in ("anthropic", "bedrock", "google")

    @property
    def empty_is_error(self) -> bool:
        """An answer without content is malformed to the adapter (no choices, no candidate)."""
        return self.name not in ("anthropic", "bedrock")

    @property
    def malformed_ends_stream(self) -> bool:
        """A malformed event ends the stream as a server_error (the google-genai SDK parses every
        event itself) instead of being skipped with a warning."""
        return self.name == "google"

    @property
    def usage_in_terminator(self) -> bool:
        """Only the terminator carries the usage (Bedrock's metadata frame)."""
        return self.name == "bedrock"

    @property
    def filters_in_band(self) -> bool:
        return self.name in ("bedrock", "google")


def _wire_of(spec: ProviderSpec) -> _Wire:
    kind = PROVIDER_TYPES[spec.type]
    return _Wire(kind.wire, usage_event=kind.preset.stream_usage if kind.preset else True)


@dataclass(frozen=True, slots=True)
class _Strike:
    """What the upstream does to one request: the fault (None: none) and the latency drawn for it."""

    fault: Fault | None
    latency: float


class SimulatedUpstream:
    """The fake upstream's fault schedule on `clock`; `rules` are timed from `origin` (set it when
    the load starts). `calls` is its log of chat requests, timed from `origin` too; `models` is
    what it lists."""

    def __init__(
        self, rules: Iterable[FaultRule], *, seed: int, clock: Clock, models: Iterable[str] = ()
    ) -> None:
        self._schedule = FaultSchedule(rules, random.Random(seed))
        self.models = sorted({*models, *(rule.model for rule in self._schedule.rules if rule.model != "*")})
        self.clock = clock
        self.origin = clock.monotonic()
        self.calls: list[UpstreamCall] = []

    def provider(self, name: str, spec: ProviderSpec) -> Provider:
        """The provider `name` of the policy, on this upstream; a key pool when the spec lists keys."""
        wire = _wire_of(spec)
        keys = spec.api_keys or []
        if len(keys) > 1:
            from router.providers.pool import KeyPool

            members = [(f"chaos-{index}", SimulatedProvider(name, wire, self)) for index in range(len(keys))]
            return KeyPool(name, members, self.clock, max_rest=spec.breaker.max_reset_timeout)
        return SimulatedProvider(name, wire, self)

    def arrive(self, wire: _Wire, model: str, *, stream: bool, prefill: bool) -> _Strike:
        """A chat request reaches the upstream: choose its fault (as `FakeUpstream` does) and log it."""
        elapsed = self.clock.monotonic() - self.origin
        chosen, latency = self._schedule.choose(model, stream=stream, prefill=prefill, elapsed=elapsed)
        self.calls.append(
            UpstreamCall(elapsed, model, chosen.name if chosen else "ok", _status(wire, chosen))
        )
        return _Strike(chosen, latency)


def _status(wire: _Wire, fault: Fault | None) -> int | None:
    """The HTTP status the fake upstream sends (None: no response head)."""
    if isinstance(fault, Reset | Hang):
        return None
    if isinstance(fault, ContentFilter) and wire.filters_in_band:
        return 200
    if isinstance(fault, HttpError):
        return fault.status
    if isinstance(fault, Rejection):
        return 400
    return 200


class SimulatedProvider:
    """One provider of the policy on the simulated upstream, speaking as its adapter would."""

    def __init__(self, name: str, wire: _Wire, upstream: SimulatedUpstream) -> None:
        self.name = name
        self._wire = wire
        self._upstream = upstream
        self._clock = upstream.clock

    async def complete(self, call: Call) -> Reply:
        fault = await self._arrive(call, stream=False)
        prompt = _prompt_tokens(call)
        match fault:
            case Html() | InvalidJson():
                raise self._error(ErrorKind.SERVER_ERROR, "malformed response body")
            case EmptyChoices() if self._wire.empty_is_error:
                raise self._error(ErrorKind.SERVER_ERROR, "malformed response body (no choices)")
            case EmptyChoices():
                return Reply("", Usage(prompt, 0), "stop")
            case ContentFilter():  # in band (Bedrock's guardrail): an answer stopped by the filter
                raise self._error(ErrorKind.CONTENT_FILTER, "the answer was withheld by a guardrail")
        pieces, finish = _pieces(call.model, fault, _prefill_text(call), self._upstream.models)
        text = "".join(pieces)
        return Reply(text, Usage(prompt, estimate_tokens(text)), finish)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        wire = self._wire
        fault = await self._arrive(call, stream=True)
        if isinstance(fault, Html | InvalidJson):
            if wire.finish_at_end:
                raise self._error(ErrorKind.SERVER_ERROR, "malformed response (no event stream came)")
            return  # no `data:` line in it: a stream that says nothing
        prompt = _prompt_tokens(call)
        pieces, finish = _pieces(call.model, fault, _prefill_text(call), self._upstream.models)
        empty = isinstance(fault, EmptyChoices)
        usage = Usage(prompt, 0 if empty else estimate_tokens("".join(pieces)))
        events, finish_index = _events(wire, pieces, empty=empty)
        strike_at = _strike_index(fault, len(events), finish_index)
        stopped = False  # the finishing event went out
        terminated = not isinstance(fault, NoDone)
        for index in range(len(events) + 1):
            if index == strike_at:
                match fault:
                    case Cut():
                        raise self._error(ErrorKind.CONNECTION, "RemoteProtocolError")
                    case Stall(seconds=seconds):
                        await self._clock.sleep(seconds)
                    case Malformed() if wire.malformed_ends_stream:
                        raise self._error(ErrorKind.SERVER_ERROR, "malformed response (not a Gemini answer)")
                    case Malformed():
                        yield Chunk(warning="skipped a malformed stream event (simulated)")
                    case InStreamError():
                        if not (wire.usage_in_terminator and stopped):
                            raise self._in_stream_error(fault)
                        terminated = False  # the answer was whole; the usage after it is lost
                        break
            if index == len(events):
                break
            event = events[index]
            stopped = stopped or event == _FINISH
            chunk = _chunk_of(wire, event, finish, usage)
            if chunk is not None:
                yield chunk
        if wire.finish_at_end and stopped:
            lost = wire.usage_in_terminator and not terminated
            yield Chunk(finish_reason=finish, usage=None if lost else usage)

    async def list_models(self) -> list[str]:
        await self._clock.sleep(CALL_LATENCY)  # the listing is never struck, as on the fake upstream
        return list(self._upstream.models)

    async def aclose(self) -> None:
        pass

    async def _arrive(self, call: Call, *, stream: bool) -> Fault | None:
        """The call reaches the upstream and waits out the call and its fault's delay; raises the
        fault's error when it has one, else returns the fault that shapes the answer."""
        strike = self._upstream.arrive(self._wire, call.model, stream=stream, prefill=_prefill(call))
        await self._clock.sleep(CALL_LATENCY + _wait(strike))
        self._raise_for(strike.fault)
        return strike.fault

    def _raise_for(self, fault: Fault | None) -> None:
        """Raise what the adapter raises for a fault that leaves no answer to read."""
        match fault:
            case Reset():
                raise self._error(ErrorKind.CONNECTION, "ReadError")
            case ContentFilter() if self._wire.name == "google":
                raise self._error(ErrorKind.CONTENT_FILTER, "the prompt was blocked (SAFETY)")
            case ContentFilter() if self._wire.filters_in_band:
                return
            case HttpError():
                headers = {key.lower(): value for key, value in fault.headers}
                raise ProviderError(
                    _status_kind(self._wire, fault.status, fault.type),
                    f"HTTP {fault.status} (simulated)",
                    provider=self.name,
                    status=fault.status,
                    retry_after=retry_after(headers),
                )
            case ContextLength():
                raise self._error(ErrorKind.CONTEXT_LENGTH, "the prompt is too long", status=400)
            case ContentFilter():
                raise self._error(ErrorKind.CONTENT_FILTER, "the prompt tripped a content filter", status=400)
            case RejectPrefill():
                raise self._error(ErrorKind.BAD_REQUEST, "assistant prefill is not supported", status=400)

    def _in_stream_error(self, fault: InStreamError) -> ProviderError:
        exception = fault.exception if isinstance(fault, ExceptionInStream) else "serviceUnavailableException"
        if self._wire.name == "anthropic":
            kind = _ANTHROPIC_IN_STREAM[exception]
        elif self._wire.name == "google":
            status = IN_STREAM_ERRORS[exception]
            kind = google_kind(None, GOOGLE_STATUS[status][0], "")
        elif self._wire.name == "bedrock":
            kind = BEDROCK_ERROR_CODES.get(exception[:1].upper() + exception[1:], ErrorKind.SERVER_ERROR)
        else:
            kind = ErrorKind.SERVER_ERROR  # OpenAI's wire sends every one as a server_error event
        return self._error(kind, f"error event in the stream: {exception}")

    def _error(self, kind: ErrorKind, message: str, *, status: int | None = None) -> ProviderError:
        return ProviderError(kind, f"{message} (simulated)", provider=self.name, status=status)


# Stream events that carry no text: the wire's bookkeeping, the finish, and OpenAI's usage chunk.
_META = "\x00meta"
_FINISH = "\x00finish"
_USAGE = "\x00usage"


def _strike_index(fault: Fault | None, count: int, finish_index: int) -> int:
    """Where, counted in the stream's `count` events, a mid-stream fault strikes (-1: nowhere), as
    on the fake upstream: a cut comes before the finishing event at the latest."""
    if isinstance(fault, Cut):
        return min(fault.after_chunks, finish_index)
    if isinstance(fault, Stall | Malformed | InStreamError):
        return min(fault.after_chunks, count)
    return -1


def _chunk_of(wire: _Wire, event: str, finish: str, usage: Usage) -> Chunk | None:
    """What the adapter yields for one of the stream's events (None: nothing)."""
    if event == _FINISH:
        return None if wire.finish_at_end else Chunk(finish_reason=finish)
    if event == _USAGE:
        return Chunk(usage=usage)
    if event == _META:
        return None
    return Chunk(text=event)


def _events(wire: _Wire, pieces: list[str], *, empty: bool) -> tuple[list[str], int]:
    """The stream's events as the fake upstream sends them on `wire` (the terminator apart), a word
    per event, and the index of the one that finishes (where a cut strikes at the latest)."""
    words = [] if empty else pieces
    block = [_META, *words, _META] if words else []  # content_block_start/stop, contentBlockStop
    if wire.name == "anthropic":
        events = [_META, _META, *block, _FINISH]  # message_start, ping, ..., message_delta
        return events, len(events) - 1
    if wire.name == "bedrock":
        events = [_META, *block[1:], _FINISH]  # messageStart, ..., messageStop
        return events, len(events) - 1
    if wire.name == "google":
        events = [*words, _FINISH]  # a word per event, then the finish with the usage
        return events, len(events) - 1
    lead = [_META] if wire.name == "azure" else []  # Azure's prompt filter results come first
    chunks = [] if empty else [_META, *words, _FINISH]  # the role delta, the words, the finish
    usage = [_USAGE] if wire.usage_event else []
    return [*lead, *chunks, *usage], len(lead) + max(0, len(chunks) - 1)


def _pieces(
    model: str, fault: Fault | None, prefill: str = "", models: Iterable[str] = ()
) -> tuple[list[str], str]:
    """The answer's words as the fake upstream sends them (after a `prefill`, the rest of the reply it
    begins), and why it finished."""
    if isinstance(fault, ContentFilter):
        return split_words(GUARDRAIL_MESSAGE), "content_filter"
    reply = reply_for(model)
    if prefill:
        reply = continuation(prefill, reply, (reply_for(other) for other in models))
    pieces = split_words(reply)
    if isinstance(fault, Truncated):
        return pieces[: len(pieces) // 2], "length"
    return pieces, "stop"


def _wait(strike: _Strike) -> float:
    """How long the upstream keeps the request before it answers (a stall waits mid-stream)."""
    match strike.fault:
        case Hang():
            return _FOREVER
        case Delay(seconds=seconds) | SlowFirstToken(seconds=seconds):
            return seconds
        case Latency():
            return strike.latency
    return 0.0


def _prefill(call: Call) -> bool:
    return bool(call.messages) and call.messages[-1].get("role") == "assistant"


def _prefill_text(call: Call) -> str:
    return content_text(call.messages[-1].get("content")) if _prefill(call) else ""


def _prompt_tokens(call: Call) -> int:
    return estimate_tokens("".join(content_text(message.get("content")) for message in call.messages))


def _status_kind(wire: _Wire, status: int, error_type: str | None) -> ErrorKind:
    """The kind the wire's adapter gives an error status (Bedrock: by the error's name)."""
    if wire.name == "bedrock":
        return bedrock_kind(error_type or bedrock_error_name(status), status, "")
    if wire.name == "anthropic":
        return anthropic_kind(status, error_type or "", "")
    if wire.name == "google":
        usual = GOOGLE_STATUS.get(status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", ""))[0]
        return google_kind(status, error_type or usual, "")
    return kind_for_status(status)
