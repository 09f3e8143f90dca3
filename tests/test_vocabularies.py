"""Every vocabulary is a `StrEnum` whose values are the documented strings: JSON, logs, metrics
and the chaos reports carry those strings, so a renamed member must not change them."""

from __future__ import annotations

import json

import pybreaker
import pytest

import router
import router.state
from router import (
    BreakerState,
    ErrorKind,
    Health,
    Outcome,
    ProviderError,
    RouterError,
    StoreUnavailable,
)
from router.policy.model import FailoverSpec, RetrySpec
from router.results import SKIPS


def values(vocabulary: type[object]) -> dict[str, str]:
    return {member.name: member.value for member in vocabulary}  # type: ignore[attr-defined]


def test_breaker_states_are_pybreakers_names() -> None:
    assert values(BreakerState) == {"CLOSED": "closed", "OPEN": "open", "HALF_OPEN": "half-open"}
    assert BreakerState.CLOSED == pybreaker.STATE_CLOSED
    assert BreakerState.OPEN == pybreaker.STATE_OPEN
    assert BreakerState.HALF_OPEN == pybreaker.STATE_HALF_OPEN
    with pytest.raises(ValueError, match="unknown breaker state 'shut'"):
        BreakerState("shut")


def test_health_values() -> None:
    assert values(Health) == {"HEALTHY": "healthy", "UNHEALTHY": "unhealthy", "UNKNOWN": "unknown"}


def test_outcome_values() -> None:
    documented = {
        "OK": "ok",
        "LIMITED": "limited",
        "BREAKER_OPEN": "breaker_open",
        "CANCELLED": "cancelled",
        "OVER_BUDGET": "over_budget",
        "DEADLINE": "deadline",
        "DRAINED": "drained",
        "UNHEALTHY": "unhealthy",
        "RECOVERING": "recovering",
    }
    assert values(Outcome).items() >= documented.items()
    # A newer outcome follows the same rule: its name, in lower case.
    assert all(outcome.value == outcome.name.lower() for outcome in Outcome)


def test_error_kind_values() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "rate_limited",
        "timeout",
        "connection",
        "server_error",
        "auth",
        "context_length",
        "content_filter",
        "bad_request",
        "stream_broken",
    ]


def test_an_attempt_outcome_is_never_ambiguous() -> None:
    """An attempt's outcome is an `Outcome` or an `ErrorKind`: no string is both."""
    assert not {o.value for o in Outcome} & {k.value for k in ErrorKind}


def test_skips_are_the_outcomes_that_send_nothing() -> None:
    sent = {Outcome.OK, Outcome.CANCELLED}  # a cancelled call went out, and lost a hedge race
    assert set(Outcome) - sent == SKIPS
    # Recordings and events carry plain strings; they match all the same.
    assert "breaker_open" in SKIPS and "ok" not in SKIPS and "timeout" not in SKIPS


def test_members_read_and_serialise_as_their_strings() -> None:
    assert (
        f"{BreakerState.HALF_OPEN} {Health.UNKNOWN} {Outcome.BREAKER_OPEN}"
        == "half-open unknown breaker_open"
    )
    document = {"state": BreakerState.OPEN, "outcomes": {Outcome.OK: 1, ErrorKind.TIMEOUT: 2}}
    assert json.dumps(document) == '{"state": "open", "outcomes": {"ok": 1, "timeout": 2}}'


def test_the_vocabularies_are_public() -> None:
    for name in ("BreakerState", "ErrorKind", "Health", "Outcome"):
        assert name in router.__all__


# -- each error kind's handling, in one place ------------------------------------------------

# kind: (retried by default, fails over by default, the request is at fault): as documented.
HANDLING = {
    ErrorKind.RATE_LIMITED: (True, True, False),
    ErrorKind.TIMEOUT: (False, True, False),
    ErrorKind.CONNECTION: (True, True, False),
    ErrorKind.SERVER_ERROR: (True, True, False),
    ErrorKind.AUTH: (False, True, False),
    ErrorKind.CONTEXT_LENGTH: (False, True, True),
    ErrorKind.CONTENT_FILTER: (False, False, True),
    ErrorKind.BAD_REQUEST: (False, False, True),
    ErrorKind.STREAM_BROKEN: (False, True, False),
}


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_each_kind_carries_its_documented_handling(kind: ErrorKind) -> None:
    retried, fails_over, blames_request = HANDLING[kind]
    assert kind.retried_by_default is retried
    assert kind.fails_over_by_default is fails_over
    assert kind.blames_request is blames_request
    # A fault of the request says nothing about the target.
    assert kind.counts_against_breaker is not blames_request
    assert ProviderError(kind, "x").retryable is retried


def test_the_policy_defaults_are_the_kinds_own() -> None:
    assert set(RetrySpec().on) == {kind for kind in ErrorKind if kind.retried_by_default}
    assert set(FailoverSpec().on) == {kind for kind in ErrorKind if kind.fails_over_by_default}


def test_store_unavailable_is_a_router_error_importable_from_the_state_package() -> None:
    assert issubclass(StoreUnavailable, RouterError)
    assert router.state.StoreUnavailable is StoreUnavailable
