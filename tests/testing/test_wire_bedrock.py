"""The fake upstream's Bedrock wire, seen through boto3: Converse, ConverseStream and every fault."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import botocore.eventstream
import botocore.exceptions
import pytest
import urllib3.exceptions

from router.testing import FakeUpstream, Fault
from tests.testing.clients import bedrock_client

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Say hello, please."}]}]
SYSTEM = [{"text": "Be brief."}]


def converse(client: Any, model: str = MODEL, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("messages", MESSAGES)
    return dict(client.converse(modelId=model, **kwargs))


def converse_events(
    client: Any, model: str = MODEL, **kwargs: Any
) -> tuple[list[tuple[float, dict[str, Any]]], Exception | None]:
    """The stream's events with their arrival time since the call, and the error that ended them."""
    started = time.monotonic()
    events: list[tuple[float, dict[str, Any]]] = []
    try:
        response = client.converse_stream(modelId=model, messages=kwargs.pop("messages", MESSAGES), **kwargs)
        for event in response["stream"]:
            events.append((time.monotonic() - started, event))
    except Exception as exc:
        return events, exc
    return events, None


def kinds(events: list[tuple[float, dict[str, Any]]]) -> list[str]:
    return [next(iter(event)) for _, event in events]


def text_of(events: list[tuple[float, dict[str, Any]]]) -> str:
    return "".join(
        event["contentBlockDelta"].get("delta", {}).get("text", "")
        for _, event in events
        if "contentBlockDelta" in event
    )


# --- healthy answers -------------------------------------------------------------------------


def test_converse_answers_with_usage_and_metrics(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    response = converse(bedrock, system=SYSTEM)

    assert response["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": f"Hello from {MODEL}."}],
    }
    assert response["stopReason"] == "end_turn"
    prompt_tokens = len("Be brief." + "Say hello, please.") // 4 + 1
    assert response["usage"] == {
        "inputTokens": prompt_tokens,
        "outputTokens": len(f"Hello from {MODEL}.") // 4 + 1,
        "totalTokens": prompt_tokens + len(f"Hello from {MODEL}.") // 4 + 1,
    }
    assert isinstance(response["metrics"]["latencyMs"], int)
    assert response["ResponseMetadata"]["RequestId"]
    record = fake_upstream.log[-1]
    assert (record.wire, record.model, record.path) == ("bedrock", MODEL, f"/model/{MODEL}/converse")


def test_converse_stream_sends_the_events_in_order(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.set_reply(MODEL, "The quick brown fox.")

    events, error = converse_events(bedrock)

    assert error is None
    assert kinds(events) == [
        "messageStart",
        *["contentBlockDelta"] * 4,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert text_of(events) == "The quick brown fox."
    assert events[0][1]["messageStart"] == {"role": "assistant"}
    assert events[-2][1]["messageStop"] == {"stopReason": "end_turn"}
    usage = events[-1][1]["metadata"]["usage"]
    assert usage["outputTokens"] == len("The quick brown fox.") // 4 + 1
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert fake_upstream.log[-1].stream is True


def test_model_ids_arrive_decoded_even_arns(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-v1:0"

    response = converse(bedrock, profile)

    assert response["output"]["message"]["content"][0]["text"] == f"Hello from {profile}."
    assert fake_upstream.count(profile) == 1


def test_list_foundation_models(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.set_reply("amazon.nova-lite-v1:0", "hi")
    converse(bedrock)

    summaries = bedrock_client(fake_upstream, "bedrock").list_foundation_models()["modelSummaries"]

    assert [s["modelId"] for s in summaries] == ["amazon.nova-lite-v1:0", MODEL]
    assert summaries[1]["providerName"] == "Anthropic"
    assert summaries[1]["modelArn"].endswith(f"foundation-model/{MODEL}")
    assert summaries[1]["inputModalities"] == ["TEXT"] and summaries[1]["responseStreamingSupported"]
    assert fake_upstream.log[-1].path == "/foundation-models"
    assert fake_upstream.count() == 1


def test_tool_call_answers(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.set_tool_call(MODEL, "get_weather", {"city": "Paris", "unit": "celsius"})

    response = converse(bedrock)
    events, error = converse_events(bedrock)

    (block,) = response["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "get_weather"
    assert block["toolUse"]["input"] == {"city": "Paris", "unit": "celsius"}
    assert response["stopReason"] == "tool_use"
    assert error is None
    start = events[1][1]["contentBlockStart"]["start"]["toolUse"]
    assert start["name"] == "get_weather" and start["toolUseId"]
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"] for _, e in events if "contentBlockDelta" in e
    ]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "Paris", "unit": "celsius"}
    assert events[-2][1]["messageStop"]["stopReason"] == "tool_use"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault.rate_limited(), 429, "ThrottlingException"),
        (Fault.server_error(), 500, "InternalServerException"),
        (Fault.unavailable(), 503, "ServiceUnavailableException"),
        (Fault.unauthorized(), 401, "AccessDeniedException"),
        (Fault.forbidden(), 403, "AccessDeniedException"),
        (Fault.http(404), 404, "ResourceNotFoundException"),
        (Fault.http(408), 408, "ModelTimeoutException"),
        (Fault.http(400, "temperature is out of range"), 400, "ValidationException"),
        (Fault.bedrock_error("ModelNotReadyException"), 429, "ModelNotReadyException"),
        (Fault.bedrock_error("ModelErrorException"), 424, "ModelErrorException"),
        (Fault.bedrock_error("ModelTimeoutException"), 408, "ModelTimeoutException"),
        (Fault.bedrock_error("ServiceQuotaExceededException", 400), 400, "ServiceQuotaExceededException"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
@pytest.mark.parametrize("stream", [False, True], ids=["converse", "stream"])
def test_statuses_raise_client_errors_with_the_bedrock_code(
    fake_upstream: FakeUpstream, bedrock: Any, fault: Fault, status: int, code: str, stream: bool
) -> None:
    fake_upstream.add_fault(MODEL, fault)

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        if stream:
            bedrock.converse_stream(modelId=MODEL, messages=MESSAGES)
        else:
            converse(bedrock)

    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert fake_upstream.log[-1].status == status


def test_retry_after_reaches_the_client(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.rate_limited(retry_after=2))

    with pytest.raises(bedrock.exceptions.ThrottlingException) as caught:
        converse(bedrock)

    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"


def test_context_length_is_a_validation_exception(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.context_length(8000))

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        converse(bedrock)

    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"] == "Input is too long for requested model."


def test_reject_prefill_is_a_validation_exception(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.reject_prefill())
    prefill = [*MESSAGES, {"role": "assistant", "content": [{"text": "Sure:"}]}]

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        converse(bedrock, messages=prefill)
    answer = converse(bedrock)

    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "prefill" in caught.value.response["Error"]["Message"]
    assert answer["stopReason"] == "end_turn"


def test_content_filter_is_a_guardrail_intervention_not_an_error(
    fake_upstream: FakeUpstream, bedrock: Any
) -> None:
    fake_upstream.add_fault(MODEL, Fault.content_filter("violence"))

    response = converse(bedrock)
    events, error = converse_events(bedrock)

    assert response["stopReason"] == "guardrail_intervened"
    assert (
        response["output"]["message"]["content"][0]["text"] == "Sorry, the model cannot answer this question."
    )
    assert error is None
    assert events[-2][1]["messageStop"]["stopReason"] == "guardrail_intervened"
    assert [(r.fault, r.status) for r in fake_upstream.log] == [("content_filter", 200)] * 2


# --- errors inside the stream ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "throttlingException",
        "modelStreamErrorException",
        "internalServerException",
        "serviceUnavailableException",
        "validationException",
    ],
)
def test_exception_frames_raise_event_stream_errors(
    fake_upstream: FakeUpstream, bedrock: Any, name: str
) -> None:
    fake_upstream.add_fault(MODEL, Fault.exception_in_stream(name, 2))

    events, error = converse_events(bedrock)

    assert kinds(events) == ["messageStart", "contentBlockDelta"]
    assert isinstance(error, botocore.exceptions.EventStreamError), repr(error)
    assert error.response["Error"]["Code"] == name
    assert error.response["Error"]["Message"]
    assert (fake_upstream.log[-1].fault, fake_upstream.log[-1].status) == ("exception_in_stream", 200)


def test_overloaded_in_stream_is_service_unavailable(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.overloaded_in_stream(1))

    events, error = converse_events(bedrock)

    assert kinds(events) == ["messageStart"]
    assert isinstance(error, botocore.exceptions.EventStreamError)
    assert error.response["Error"]["Code"] == "serviceUnavailableException"


# --- broken streams --------------------------------------------------------------------------


def test_cut_ends_the_stream_before_message_stop(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.cut(100))

    events, error = converse_events(bedrock)

    assert kinds(events)[-1] == "contentBlockStop"
    assert text_of(events) == f"Hello from {MODEL}."
    # botocore does not wrap errors that happen while the stream is read.
    assert isinstance(error, urllib3.exceptions.ProtocolError), repr(error)


def test_stall_pauses_mid_stream_then_finishes(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.stall(2, 0.2))

    events, error = converse_events(bedrock)

    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(events)]
    assert error is None
    assert gaps[1] >= 0.15 and max(gaps) == gaps[1]
    assert kinds(events)[-1] == "metadata"


def test_stall_past_the_read_timeout_is_a_urllib3_timeout(fake_upstream: FakeUpstream) -> None:
    fake_upstream.add_fault(MODEL, Fault.stall(1, 0.3))

    events, error = converse_events(bedrock_client(fake_upstream, read_timeout=0.1))

    assert kinds(events) == ["messageStart"]
    assert isinstance(error, urllib3.exceptions.ReadTimeoutError), repr(error)


def test_malformed_frame_arrives_as_an_empty_event(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.malformed(2))

    events, error = converse_events(bedrock)

    assert error is None
    assert events[2][1] == {"contentBlockDelta": {}}
    assert text_of(events) == f"Hello from {MODEL}."
    assert kinds(events)[-1] == "metadata"


def test_no_done_ends_after_message_stop_without_metadata(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.no_done())

    events, error = converse_events(bedrock)

    assert error is None
    assert kinds(events)[-1] == "messageStop"


def test_slow_first_token_holds_the_first_event(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.add_fault(MODEL, Fault.slow_first_token(0.2))

    events, error = converse_events(bedrock)

    assert error is None
    assert events[0][0] >= 0.2


# --- connection faults and garbage -----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["converse", "stream"])
def test_reset_is_connection_closed(fake_upstream: FakeUpstream, bedrock: Any, stream: bool) -> None:
    fake_upstream.add_fault(MODEL, Fault.reset())

    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        bedrock.converse_stream(modelId=MODEL, messages=MESSAGES) if stream else converse(bedrock)


def test_hang_is_a_read_timeout(fake_upstream: FakeUpstream) -> None:
    fake_upstream.add_fault(MODEL, Fault.hang(), times=1)
    client = bedrock_client(fake_upstream, read_timeout=0.2)

    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        converse(client)

    assert 0.2 <= time.monotonic() - started < 1.0
    assert converse(client)["stopReason"] == "end_turn"


@pytest.mark.parametrize("fault", [Fault.html(), Fault.invalid_json()], ids=["html", "invalid_json"])
def test_garbage_200_parses_to_an_empty_converse_response(
    fake_upstream: FakeUpstream, bedrock: Any, fault: Fault
) -> None:
    fake_upstream.add_fault(MODEL, fault)

    response = converse(bedrock)
    events, error = converse_events(bedrock)

    assert "output" not in response and "stopReason" not in response
    assert events == [] and isinstance(error, botocore.eventstream.ChecksumMismatch)


def test_empty_and_truncated_answers(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.set_reply(MODEL, "one two three four")
    fake_upstream.add_fault(MODEL, Fault.empty_choices(), times=2)
    fake_upstream.add_fault(MODEL, Fault.truncated())

    empty = converse(bedrock)
    empty_events, _ = converse_events(bedrock)
    truncated = converse(bedrock)
    truncated_events, _ = converse_events(bedrock)

    assert empty["output"]["message"]["content"] == []
    assert kinds(empty_events) == ["messageStart", "messageStop", "metadata"]
    assert truncated["output"]["message"]["content"] == [{"text": "one two"}]
    assert truncated["stopReason"] == "max_tokens"
    assert text_of(truncated_events) == "one two"
    assert truncated_events[-2][1]["messageStop"]["stopReason"] == "max_tokens"
