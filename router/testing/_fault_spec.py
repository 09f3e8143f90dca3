"""Faults as data: a tagged union of fault kinds, the scope of a rule, and the short text form.

A scenario's fault entry and the CLI's `--fault MODEL=SPEC` are both read into these models,
and through the policy's document pipeline (`router.policy.document`), so they accept the same
things and say the same about what they refuse. In a scenario a fault is a mapping
(`{kind: latency, mean: 80ms, jitter: 60ms}`) or its text form (`"latency:80ms,60ms"`).

The text form's grammar::

    RULE   := MODEL "=" FAULT ["," SCOPE]...          (the CLI's --fault)
    FAULT  := KIND [":" ARG ("," ARG)*]                (a scenario's `fault:` may be this text)
    ARG    := VALUE | KEY "=" VALUE                   positional arguments first, in order
    SCOPE  := times=N | after=N | start=DUR | end=DUR | p=NUMBER (or probability=)
    DUR    := a duration as a policy writes it (250ms, 2s, 1.5m, 1h); in the text form only, a
              bare number is seconds (`delay:1.5`, `retry_after=2`, as a Retry-After header says)

MODEL is a model name (it may contain ":") or "*"; KEY is a field of the kind ("-" reads as
"_"). A status 400..599 is the kind `http` with that status. Scope keys go in the text on the
command line only: in a scenario they are keys of the entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.policy.document import explain
from router.policy.model import Duration, parse_duration
from router.policy.source import dotted
from router.testing.faults import Fault, FaultRule

__all__ = ["FaultKind", "FaultScope", "parse_fault_spec", "parse_fault_text"]


class _Kind(BaseModel):
    """One kind of fault, named by its `kind` (mostly the name of the `Fault` constructor)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # each kind narrows it to its tags
    positional: ClassVar[tuple[str, ...]] = ()
    """The fields the text form takes without a name, in order."""

    def build(self) -> Fault:
        raise NotImplementedError

    @model_validator(mode="after")
    def _buildable(self) -> _Kind:
        self.build()  # the constructors judge what the fields cannot (a Bedrock error's name)
        return self


class _Status(_Kind):
    retry_after: Duration | None = Field(None, description="Sent as the Retry-After header.")
    retry_after_ms: int | None = Field(None, ge=0, description="Sent as the retry-after-ms header.")

    def answer(self, status: int) -> Fault:
        return Fault.http(status, retry_after=self.retry_after, retry_after_ms=self.retry_after_ms)


class HttpFault(_Status):
    """Any error status, in the error shape of the wire the request came on."""

    kind: Literal["http"]
    status: int

    @field_validator("status")
    @classmethod
    def _an_error(cls, status: int) -> int:
        if not 400 <= status <= 599:
            raise ValueError("must be within 400..599")
        return status

    def build(self) -> Fault:
        return self.answer(self.status)


_NAMED_STATUS = {
    "rate_limited": 429,
    "server_error": 500,
    "unavailable": 503,
    "overloaded": 529,
    "unauthorized": 401,
    "forbidden": 403,
}


class NamedStatusFault(_Status):
    kind: Literal["rate_limited", "server_error", "unavailable", "overloaded", "unauthorized", "forbidden"]

    def build(self) -> Fault:
        return self.answer(_NAMED_STATUS[self.kind])


class OutageFault(_Kind):
    """503 for `length`, from the rule's start (default: the start of the load), then healthy."""

    kind: Literal["outage"]
    length: Duration
    positional = ("length",)

    def build(self) -> Fault:
        return Fault.unavailable()


class PlainFault(_Kind):
    kind: Literal[
        "reset",
        "hang",
        "no_done",
        "reject_prefill",
        "html",
        "invalid_json",
        "empty_choices",
        "truncated",
        "no_finish",
    ]

    def build(self) -> Fault:
        return getattr(Fault, self.kind)()  # type: ignore[no-any-return]


class WaitFault(_Kind):
    kind: Literal["delay", "slow_first_token"]
    seconds: Duration
    positional = ("seconds",)

    def build(self) -> Fault:
        return getattr(Fault, self.kind)(self.seconds)  # type: ignore[no-any-return]


class LatencyFault(_Kind):
    kind: Literal["latency"]
    mean: Duration
    jitter: Duration = 0.0
    positional = ("mean", "jitter")

    def build(self) -> Fault:
        return Fault.latency(self.mean, self.jitter)


class ChunksFault(_Kind):
    kind: Literal["cut", "malformed", "overloaded_in_stream"]
    after_chunks: int = Field(ge=0)
    positional = ("after_chunks",)

    def build(self) -> Fault:
        return getattr(Fault, self.kind)(self.after_chunks)  # type: ignore[no-any-return]


class StallFault(_Kind):
    kind: Literal["stall"]
    after_chunks: int = Field(ge=0)
    seconds: Duration
    positional = ("after_chunks", "seconds")

    def build(self) -> Fault:
        return Fault.stall(self.after_chunks, self.seconds)


class ContextLengthFault(_Kind):
    kind: Literal["context_length"]
    limit: int = Field(128_000, ge=0)
    positional = ("limit",)

    def build(self) -> Fault:
        return Fault.context_length(self.limit)


class ContentFilterFault(_Kind):
    kind: Literal["content_filter"]
    category: str = "hate"
    positional = ("category",)

    def build(self) -> Fault:
        return Fault.content_filter(self.category)


class StreamExceptionFault(_Kind):
    kind: Literal["exception_in_stream"]
    name: str
    after_chunks: int = Field(ge=0)
    positional = ("name", "after_chunks")

    def build(self) -> Fault:
        return Fault.exception_in_stream(self.name, self.after_chunks)


class BedrockErrorFault(_Kind):
    kind: Literal["bedrock_error"]
    name: str
    status: int | None = None
    positional = ("name", "status")

    def build(self) -> Fault:
        return Fault.bedrock_error(self.name, self.status)


class GzipBombFault(_Kind):
    kind: Literal["gzip_bomb"]
    size: int = Field(1 << 30, ge=0, description="Bytes the body inflates to.")
    positional = ("size",)

    def build(self) -> Fault:
        return Fault.gzip_bomb(self.size)


class HugeFault(_Kind):
    kind: Literal["huge"]
    size: int = Field(ge=0, description="Bytes of text in the reply.")
    positional = ("size",)

    def build(self) -> Fault:
        return Fault.huge(self.size)


class EndlessFault(_Kind):
    kind: Literal["endless"]
    chunk: int = Field(64 * 1024, ge=0, description="Bytes of each content event.")
    positional = ("chunk",)

    def build(self) -> Fault:
        return Fault.endless(self.chunk)


def parse_fault_text(value: Any) -> Any:
    """A scenario's `fault:` in its text form (`cut:3`) as the mapping it stands for; else `value`."""
    if not isinstance(value, str):
        return value
    fault, scope = _read_fault(value)
    if scope:
        raise ValueError("write times, after, start, end and probability as keys of the entry")
    return fault


FaultKind = Annotated[
    Union[  # noqa: UP007  # a tagged union is written with Union
        HttpFault,
        NamedStatusFault,
        OutageFault,
        PlainFault,
        WaitFault,
        LatencyFault,
        ChunksFault,
        StallFault,
        ContextLengthFault,
        ContentFilterFault,
        StreamExceptionFault,
        BedrockErrorFault,
        GzipBombFault,
        HugeFault,
        EndlessFault,
    ],
    Field(discriminator="kind"),
    BeforeValidator(parse_fault_text),
]
"""A fault, tagged by its `kind`: a mapping, or the text form."""

_KIND_OF: dict[str, type[_Kind]] = {
    tag: model
    for model in get_args(get_args(FaultKind)[0])
    for tag in get_args(model.model_fields["kind"].annotation)
}


class FaultScope(BaseModel):
    """A fault and when it strikes: a scenario's fault entry but for its subject, and what the
    text form holds after `MODEL=`. Times are seconds from the start (of the load, or the upstream)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fault: FaultKind
    start: Duration | None = None
    end: Duration | None = None
    probability: float = Field(1.0, ge=0, le=1, description="The share of matching requests struck.")
    times: int | None = Field(None, ge=0, description="Strike at most this many times.")
    after: int = Field(0, ge=0, description="Let this many matching requests through first.")

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: float | None, info: ValidationInfo) -> float | None:
        if end is not None and isinstance(info.data.get("fault"), OutageFault):
            raise ValueError("an outage takes its length, not end")
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            raise ValueError("end is before start")
        return end

    def rule(self, model: str) -> FaultRule:
        """The rule striking `model` (`"*"`: any)."""
        end = self.end
        if isinstance(self.fault, OutageFault):
            end = (self.start or 0.0) + self.fault.length
        return FaultRule(
            model,
            self.fault.build(),
            times=self.times,
            after=self.after,
            start=self.start,
            end=end,
            probability=self.probability,
        )


def parse_fault_spec(text: str) -> FaultRule:
    """Read one rule from the CLI's `--fault MODEL=SPEC` (the grammar is this module's docstring).

    Examples: `gpt-4o=503`, `gpt-4o=500:times=1`, `gpt-4o=429:retry_after=2`, `gpt-4o=outage:10s`,
    `*=latency:200ms,50ms`, `*=500:p=0.1`, `ft:gpt-4o:acme=stall:2,5s,after=1`,
    `claude-3-5-haiku=overloaded_in_stream:3`, `m=exception_in_stream:throttlingException,2`.

    Raises ValueError quoting `text` and saying what is wrong with it.
    """
    model, sep, rest = text.partition("=")
    model = model.strip()
    try:
        if not sep or not model:
            raise ValueError("expected MODEL=KIND[:ARGS], e.g. 'gpt-4o=503'")
        fault, scope = _read_fault(rest)
        try:
            return FaultScope.model_validate({"fault": fault, **_seconds(FaultScope, scope)}).rule(model)
        except ValidationError as error:
            problems = explain(FaultScope, error.errors(include_url=False))
            raise ValueError("; ".join(f"{p.message} ({dotted(p.path)})" for p in problems)) from None
    except ValueError as error:
        raise ValueError(f"fault spec {text!r}: {error}") from None


_SCOPE = ("times", "after", "start", "end", "probability")
_SHORT = {"p": "probability"}


def _read_fault(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """`KIND[:ARG,...]` -> the fault's mapping, and the scope keys found among its arguments."""
    kind, _, arguments = text.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if not kind:
        raise ValueError("missing the fault kind")
    positional: list[str] = []
    named: dict[str, str] = {}
    for raw in arguments.split(",") if arguments.strip() else []:
        part = raw.strip()
        if not part:
            raise ValueError("empty argument")
        key, eq, value = part.partition("=")
        if not eq:
            if named:
                raise ValueError(f"positional argument {part!r} after a named one")
            positional.append(part)
            continue
        key = key.strip().lower().replace("-", "_")
        key = _SHORT.get(key, key)
        if key in named:
            raise ValueError(f"{key!r} given twice")
        named[key] = value.strip()
    scope = {key: named.pop(key) for key in _SCOPE if key in named}
    fault: dict[str, Any] = {"kind": kind}
    if kind.isdigit():
        fault = {"kind": "http", "status": kind}
    model = _KIND_OF.get(fault["kind"])
    if model is None:
        return fault, scope  # the tag names no kind: the model says so
    if len(positional) > len(model.positional):
        raise ValueError(f"{kind} takes at most {len(model.positional)} positional argument(s)")
    for key, value in zip(model.positional, positional, strict=False):
        if key in named:
            raise ValueError(f"{key!r} given twice")
        named[key] = value
    return {**fault, **_seconds(model, named)}, scope


_BARE_NUMBER = re.compile(r"\s*\d+(\.\d+)?\s*")


def _seconds(model: type[BaseModel], arguments: dict[str, str]) -> dict[str, str]:
    """`arguments` with a bare number given for a duration read as seconds (the text form's rule)."""
    return {
        key: f"{value}s" if _BARE_NUMBER.fullmatch(value) and _is_duration(model, key) else value
        for key, value in arguments.items()
    }


def _is_duration(model: type[BaseModel], name: str) -> bool:
    """Is the field `name` of `model` a `Duration` (or an optional one)?"""
    field = model.model_fields.get(name)
    if field is None:
        return False
    return _parses_duration(field.metadata) or _mentions_duration(field.annotation)


def _mentions_duration(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated and _parses_duration(annotation.__metadata__):
        return True
    return any(_mentions_duration(arg) for arg in get_args(annotation))


def _parses_duration(metadata: Iterable[Any]) -> bool:
    return any(getattr(meta, "func", None) is parse_duration for meta in metadata)
