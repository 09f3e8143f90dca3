"""The `--fault MODEL=SPEC` text form, the fault models it is read into, and the fault values they build."""

from __future__ import annotations

import pytest

from router.testing import Fault, FaultRule, parse_fault_spec
from router.testing._fault_spec import FaultScope
from router.testing.faults import (
    BEDROCK_ERRORS,
    STREAM_EXCEPTIONS,
    HttpError,
    bedrock_error_name,
)


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("gpt-4o=503", FaultRule("gpt-4o", Fault.unavailable())),
        ("gpt-4o=500:times=1", FaultRule("gpt-4o", Fault.server_error(), times=1)),
        ("gpt-4o=429", FaultRule("gpt-4o", Fault.rate_limited())),
        ("gpt-4o=429:retry_after=2", FaultRule("gpt-4o", Fault.rate_limited(retry_after=2))),
        ("gpt-4o=429:retry_after_ms=1500", FaultRule("gpt-4o", Fault.rate_limited(retry_after_ms=1500))),
        ("gpt-4o=rate_limited:retry-after=500ms", FaultRule("gpt-4o", Fault.rate_limited(retry_after=0.5))),
        ("gpt-4o=401", FaultRule("gpt-4o", Fault.unauthorized())),
        ("gpt-4o=forbidden", FaultRule("gpt-4o", Fault.forbidden())),
        ("gpt-4o=reset", FaultRule("gpt-4o", Fault.reset())),
        ("gpt-4o=hang", FaultRule("gpt-4o", Fault.hang())),
        ("gpt-4o=outage:10s", FaultRule("gpt-4o", Fault.unavailable(), end=10.0)),
        ("gpt-4o=outage:10s,start=5", FaultRule("gpt-4o", Fault.unavailable(), start=5.0, end=15.0)),
        ("gpt-4o=cut:3", FaultRule("gpt-4o", Fault.cut(3))),
        ("gpt-4o=stall:2,5s", FaultRule("gpt-4o", Fault.stall(2, 5.0))),
        ("gpt-4o=malformed:after_chunks=1", FaultRule("gpt-4o", Fault.malformed(1))),
        ("gpt-4o=no_done", FaultRule("gpt-4o", Fault.no_done())),
        ("gpt-4o=delay:1.5", FaultRule("gpt-4o", Fault.delay(1.5))),
        ("gpt-4o=slow-first-token:250ms", FaultRule("gpt-4o", Fault.slow_first_token(0.25))),
        ("*=latency:200ms,50ms", FaultRule("*", Fault.latency(0.2, 0.05))),
        ("*=500:p=0.1", FaultRule("*", Fault.server_error(), probability=0.1)),
        ("m=503:after=2,times=3,start=1s,end=1m", FaultRule("m", Fault.unavailable(), 3, 2, 1.0, 60.0)),
        ("m=context_length", FaultRule("m", Fault.context_length())),
        ("m=context_length:8192", FaultRule("m", Fault.context_length(8192))),
        ("m=content_filter:sexual", FaultRule("m", Fault.content_filter("sexual"))),
        ("m=reject_prefill", FaultRule("m", Fault.reject_prefill())),
        ("m=html", FaultRule("m", Fault.html())),
        ("m=invalid_json", FaultRule("m", Fault.invalid_json())),
        ("m=empty_choices", FaultRule("m", Fault.empty_choices())),
        ("m=truncated", FaultRule("m", Fault.truncated())),
        (
            "ft:gpt-4o:acme::abc=stall:2,5s,after=1",
            FaultRule("ft:gpt-4o:acme::abc", Fault.stall(2, 5.0), after=1),
        ),
        (" gpt-4o = 502 ", FaultRule("gpt-4o", Fault.http(502))),
        ("claude=overloaded", FaultRule("claude", Fault.overloaded())),
        ("claude=overloaded_in_stream:3", FaultRule("claude", Fault.overloaded_in_stream(3))),
        (
            "anthropic.claude-3-haiku-20240307-v1:0=exception_in_stream:throttlingException,2",
            FaultRule(
                "anthropic.claude-3-haiku-20240307-v1:0", Fault.exception_in_stream("throttlingException", 2)
            ),
        ),
        ("m=bedrock_error:ModelErrorException", FaultRule("m", Fault.bedrock_error("ModelErrorException"))),
        ("m=bedrock_error:QuotaException,400", FaultRule("m", Fault.bedrock_error("QuotaException", 400))),
    ],
)
def test_specs_parse_to_rules(spec: str, rule: FaultRule) -> None:
    assert parse_fault_spec(spec) == rule


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("gpt-4o", "expected MODEL=KIND"),
        ("=503", "expected MODEL=KIND"),
        ("gpt-4o=", "missing the fault kind"),
        ("gpt-4o=teapot", "unknown kind 'teapot'; expected one of: http, rate_limited,"),
        ("gpt-4o=200", "within 400..599"),
        ("gpt-4o=cut", "missing required key 'after_chunks' (fault.after_chunks)"),
        ("gpt-4o=cut:x", "expected a whole number (fault.after_chunks)"),
        ("gpt-4o=cut:-1", "greater than or equal to 0 (fault.after_chunks)"),
        ("gpt-4o=stall:2", "missing required key 'seconds'"),
        ("gpt-4o=delay:soon", "expected a duration such as 250ms"),
        ("gpt-4o=reset:3", "at most 0 positional"),
        ("gpt-4o=503:colour=red", "unknown key 'colour'"),
        ("gpt-4o=503:times=-1", "greater than or equal to 0 (times)"),
        ("gpt-4o=503:p=2", "less than or equal to 1 (probability)"),
        ("gpt-4o=503:p=often", "expected a number (probability)"),
        ("gpt-4o=503:start=5,end=1", "end is before start (end)"),
        ("gpt-4o=outage:5s,end=9", "outage takes its length"),
        ("gpt-4o=stall:after_chunks=1,2", "positional argument '2' after a named one"),
        ("gpt-4o=cut:1,", "empty argument"),
        ("gpt-4o=503:times=1,times=2", "'times' given twice"),
        ("m=exception_in_stream:oopsException,1", "unknown stream exception 'oopsException'"),
        ("m=exception_in_stream:throttlingException", "missing required key 'after_chunks'"),
        ("m=bedrock_error:QuotaException", "unknown Bedrock error 'QuotaException': give its status"),
        ("gpt-4o=cutt:3", "unknown kind 'cutt'; did you mean 'cut'?"),
        ("gpt-4o=outage:2d", "expected a duration such as 250ms"),
        ("gpt-4o=outage:25h", "too long: a duration is at most 24h"),
        ("gpt-4o=delay:.5", "expected a duration such as 250ms"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_fault_spec(spec)

    assert complaint in str(caught.value)
    assert repr(spec) in str(caught.value) or spec.strip() == "gpt-4o"


@pytest.mark.parametrize(
    ("text", "seconds"), [("2", 2.0), ("2s", 2.0), ("250ms", 0.25), ("1.5m", 90.0), ("1h", 3600.0)]
)
def test_durations_are_the_policys_and_bare_numbers_are_seconds_in_the_text_form(
    text: str, seconds: float
) -> None:
    assert parse_fault_spec(f"m=delay:{text}").fault == Fault.delay(seconds)
    assert parse_fault_spec(f"m=503:start={text}").start == seconds


def test_a_fault_is_a_mapping_tagged_by_its_kind_or_its_text() -> None:
    as_text = FaultScope.model_validate({"fault": "latency:80ms,60ms", "start": "1s"})
    as_mapping = FaultScope.model_validate(
        {"fault": {"kind": "latency", "mean": "80ms", "jitter": "60ms"}, "start": "1s"}
    )
    assert as_text == as_mapping
    assert as_mapping.rule("m") == FaultRule("m", Fault.latency(0.08, 0.06), start=1.0)
    outage = FaultScope.model_validate({"fault": {"kind": "outage", "length": "5s"}, "start": "2s"})
    assert outage.rule("*") == FaultRule("*", Fault.unavailable(), start=2.0, end=7.0)


def test_outside_the_text_form_a_bare_number_is_no_duration() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        FaultScope.model_validate({"fault": {"kind": "delay", "seconds": 2}})
    with pytest.raises(ValueError, match="expected a duration"):
        FaultScope.model_validate({"fault": "503", "start": 2})


def test_fault_names_label_the_log() -> None:
    assert [
        f.name
        for f in (
            Fault.rate_limited(),
            Fault.http(502),
            Fault.context_length(),
            Fault.content_filter(),
            Fault.reset(),
            Fault.slow_first_token(1),
            Fault.no_done(),
            Fault.reject_prefill(),
            Fault.overloaded(),
            Fault.overloaded_in_stream(1),
            Fault.exception_in_stream("ThrottlingException", 1),
            Fault.bedrock_error("ModelNotReadyException"),
        )
    ] == [
        "http_429",
        "http_502",
        "context_length",
        "content_filter",
        "reset",
        "slow_first_token",
        "no_done",
        "reject_prefill",
        "http_529",
        "overloaded_in_stream",
        "exception_in_stream",
        "http_429",
    ]


def test_bedrock_names_are_normalised_and_carry_their_status() -> None:
    assert Fault.exception_in_stream("ModelStreamErrorException", 2).exception == "modelStreamErrorException"
    assert Fault.bedrock_error("ModelErrorException") == HttpError(424, type="ModelErrorException")
    assert Fault.bedrock_error("ModelTimeoutException").status == 408
    assert Fault.exception_in_stream("validationException", 0).stream_only


def test_faults_are_frozen_values() -> None:
    fault = Fault.rate_limited(retry_after=1.5, retry_after_ms=1500)

    assert isinstance(fault, HttpError)
    assert fault.headers == (("Retry-After", "1.5"), ("retry-after-ms", "1500"))
    assert fault == Fault.rate_limited(retry_after=1.5, retry_after_ms=1500)
    with pytest.raises(AttributeError):
        fault.status = 500  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Fault.delay(-1),
        lambda: Fault.latency(float("nan")),
        lambda: Fault.cut(-1),
        lambda: Fault.stall(1, -2),
        lambda: Fault.overloaded_in_stream(-1),
        lambda: Fault.exception_in_stream("throttlingException", -1),
    ],
)
def test_fault_constructors_reject_nonsense(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_rules_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="model"):
        FaultRule("", Fault.hang())
    with pytest.raises(ValueError, match="after"):
        FaultRule("m", Fault.hang(), after=-1)


def test_one_bedrock_table_names_every_status_and_stream_exception() -> None:
    assert [bedrock_error_name(status) for status in (400, 401, 403, 429, 502)] == [
        "ValidationException",
        "AccessDeniedException",
        "AccessDeniedException",
        "ThrottlingException",
        "InternalServerException",
    ]
    assert all(name[:1].upper() + name[1:] in BEDROCK_ERRORS for name in STREAM_EXCEPTIONS)
    assert Fault.bedrock_error("ModelStreamErrorException").status == 424
