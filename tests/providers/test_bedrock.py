"""The Bedrock adapter: translation and error mapping against a stand-in client, then boto3 itself
against the loopback fake upstream, under every fault."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.eventstream
import botocore.exceptions
import botocore.parsers
import pytest
import urllib3.exceptions

from router import AllTargetsFailed, Policy, Router, StreamBroken
from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk
from router.providers.bedrock import BedrockProvider, converse_request
from router.results import Completion, ToolCall, Usage
from router.testing import FakeUpstream, Fault

KEY_ID = "test-key-id-0123456789"
SECRET = "test/secret/0123456789abcdefghijklmnopqrst"
USER = [{"role": "user", "content": "Tell me something."}]
UNUSED_ENDPOINT = "http://127.0.0.1:9"  # never contacted: a stand-in client replaces boto3's


def make_spec(base_url: str = UNUSED_ENDPOINT, **extra: Any) -> ProviderSpec:
    return ProviderSpec.model_validate(
        {
            "type": "bedrock",
            "region": "us-east-1",
            "base_url": base_url,
            "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET,
            **extra,
        }
    )


# -- a stand-in for the boto3 client ---------------------------------------------------------


class StubEvents:
    """What botocore's EventStream offers: iteration and close. `gate` blocks before an item."""

    def __init__(self, items: list[Any], gate: threading.Event | None = None) -> None:
        self.items = items
        self.gate = gate
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if item == "block" and self.gate is not None:
                self.gate.wait(5)
                if self.closed.is_set():
                    raise urllib3.exceptions.ProtocolError("connection closed")
                continue
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.closed.set()
        if self.gate is not None:
            self.gate.set()  # as a socket shutdown wakes a blocked read


class StubClient:
    def __init__(self, reply: Any = None, error: BaseException | None = None, events: Any = None) -> None:
        self.reply, self.error, self.events = reply, error, events
        self.requests: list[dict[str, Any]] = []

    def converse(self, **request: Any) -> Any:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return self.reply

    def converse_stream(self, **request: Any) -> Any:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return {"stream": self.events}

    def close(self) -> None:
        pass


def stub_provider(client: StubClient, **extra: Any) -> BedrockProvider:
    provider = BedrockProvider("aws", make_spec(**extra))
    provider._runtime = client
    return provider


def call(messages: Any = USER, **options: Any) -> Call:
    return Call("anthropic.claude-test", messages, 5.0, options=options)


def answer(content: list[Any], stop: str = "end_turn", usage: Any = None) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage or {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
    }


def client_error(code: str, status: int | None, message: str = "", **headers: str) -> Exception:
    metadata: dict[str, Any] = {"HTTPHeaders": headers}
    if status is not None:
        metadata["HTTPStatusCode"] = status
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}, "Converse"
    )


async def collect(provider: BedrockProvider, request: Call | None = None) -> list[Chunk]:
    return [chunk async for chunk in provider.stream(request or call())]


# -- translation ------------------------------------------------------------------------------


def test_conversation_translation():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "user", "content": [{"type": "text", "text": "And in Rome?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "t2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "rain"},
        {"role": "developer", "content": "Answer in French."},
        {"role": "assistant", "content": "Paris:"},
    ]
    request = converse_request(
        Call(
            "m",
            messages,
            5.0,
            max_tokens=100,
            temperature=0.2,
            options={"stop": "END", "top_p": 0.9, "response_format": {"type": "json_object"}, "seed": 1},
        )
    )
    assert request == {
        "modelId": "m",
        "system": [{"text": "Be brief."}, {"text": "Answer in French."}],
        "messages": [
            {
                "role": "user",
                "content": [{"text": "What is the weather in Paris?"}, {"text": "And in Rome?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
                    {"toolResult": {"toolUseId": "t2", "content": [{"text": "rain"}]}},
                ],
            },
            {"role": "assistant", "content": [{"text": "Paris:"}]},  # a prefill, passed on
        ],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
    }


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather by city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "clock"}},
]
TOOL_SPECS = [
    {
        "toolSpec": {
            "name": "weather",
            "description": "Weather by city.",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
        }
    },
    {"toolSpec": {"name": "clock", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "clock"}}, {"tool": {"name": "clock"}}),
    ],
)
def test_tools_and_tool_choice(choice, expected):
    request = converse_request(call(tools=TOOLS, tool_choice=choice))
    config = request["toolConfig"]
    assert config["tools"] == TOOL_SPECS
    assert config.get("toolChoice") == expected


def test_tool_choice_none_hides_the_tools_unless_the_conversation_uses_them():
    assert "toolConfig" not in converse_request(call(tools=TOOLS, tool_choice="none"))
    history = [
        *USER,
        {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "clock", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "noon"},
    ]
    # Converse refuses tool blocks without a toolConfig: the tools stay, the model decides.
    assert converse_request(call(history, tools=TOOLS, tool_choice="none"))["toolConfig"] == {
        "tools": TOOL_SPECS
    }


def test_inline_images_become_bytes():
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    blocks = converse_request(call([{"role": "user", "content": content}]))["messages"][0]["content"]
    assert blocks[1] == {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n\x1a\n"}}}


@pytest.mark.parametrize(
    "messages",
    [
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
            }
        ],
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}],
            }
        ],
        [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{oops"}}]}],
        [{"role": "narrator", "content": "Once upon a time"}],
    ],
)
async def test_untranslatable_request_is_a_bad_request_without_a_call(messages):
    client = StubClient(answer([{"text": "unused"}]))
    provider = stub_provider(client)
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call(messages))
    assert raised.value.kind is ErrorKind.BAD_REQUEST and raised.value.provider == "aws"
    assert client.requests == []
    await provider.aclose()


# -- answers ----------------------------------------------------------------------------------


async def test_reply_text_tool_calls_and_usage():
    content = [
        {"text": "Let me look. "},
        {"reasoningContent": {"reasoningText": {"text": "hidden"}}},
        {"text": "One moment."},
        {"toolUse": {"toolUseId": "tu1", "name": "weather", "input": {"city": "Paris"}}},
    ]
    usage = {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 3}
    provider = stub_provider(StubClient(answer(content, "tool_use", usage)))
    reply = await provider.complete(call())
    await provider.aclose()
    assert reply.text == "Let me look. One moment."
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (ToolCall("tu1", "weather", '{"city": "Paris"}'),)
    assert reply.usage == Usage(113, 5)  # cache reads and writes are input too


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("something_new", "something_new"),
    ],
)
async def test_stop_reasons(stop, finish):
    provider = stub_provider(StubClient(answer([{"text": "x"}], stop)))
    assert (await provider.complete(call())).finish_reason == finish
    await provider.aclose()


@pytest.mark.parametrize(
    ("stop", "kind"),
    [
        ("guardrail_intervened", ErrorKind.CONTENT_FILTER),
        ("content_filtered", ErrorKind.CONTENT_FILTER),
        ("malformed_model_output", ErrorKind.SERVER_ERROR),
        ("malformed_tool_use", ErrorKind.SERVER_ERROR),
    ],
)
async def test_withheld_or_malformed_answers_raise(stop, kind):
    provider = stub_provider(StubClient(answer([{"text": "Sorry."}], stop)))
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call())
    await provider.aclose()
    assert raised.value.kind is kind and stop in raised.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"ResponseMetadata": {"HTTPStatusCode": 200}},  # what botocore makes of a garbage body
        {"output": {"message": {"content": "not a list of blocks"}}},
        {"output": {"message": {"content": [{"text": 42}]}}},
        {"output": {"message": {"content": [{"toolUse": {"name": "no id"}}]}}},
        {"output": None},
    ],
)
async def test_unparseable_reply_is_a_server_error(body):
    provider = stub_provider(StubClient(body))
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call())
    await provider.aclose()
    assert raised.value.kind is ErrorKind.SERVER_ERROR


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "message", "kind"),
    [
        ("ThrottlingException", 429, "Too many requests, please wait before trying again.", "rate_limited"),
        ("ModelNotReadyException", 429, "Model is not ready for inference.", "rate_limited"),
        ("ServiceQuotaExceededException", 400, "Quota exceeded.", "rate_limited"),
        ("ModelTimeoutException", 408, "Model timed out.", "timeout"),
        ("ServiceUnavailableException", 503, "Service unavailable.", "server_error"),
        ("InternalServerException", 500, "Internal error.", "server_error"),
        ("ModelErrorException", 424, "The model failed.", "server_error"),
        ("ModelStreamErrorException", 424, "Stream failed.", "server_error"),
        ("ValidationException", 400, "Input is too long for requested model.", "context_length"),
        ("ValidationException", 400, "Too many input tokens. Max input tokens: 8192", "context_length"),
        ("ValidationException", 400, "prompt is too long: 210000 tokens > 200000 maximum", "context_length"),
        ("ValidationException", 400, "A conversation must start with a user message.", "bad_request"),
        ("AccessDeniedException", 403, "You don't have access to the model.", "auth"),
        (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
            "auth",
        ),
        ("ResourceNotFoundException", 404, "Model not found.", "auth"),
        ("SomethingNewException", 503, "", "server_error"),
        ("SomethingNewException", 400, "", "bad_request"),
        ("502", 502, "<html><body>Bad gateway</body></html>", "server_error"),
    ],
)
async def test_client_errors(code, status, message, kind):
    provider = stub_provider(StubClient(error=client_error(code, status, message)))
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call())
    await provider.aclose()
    error = raised.value
    assert (error.kind, error.status, error.provider) == (kind, status, "aws")
    assert "<html>" not in str(error)


async def test_retry_after_is_read_from_the_headers():
    provider = stub_provider(
        StubClient(error=client_error("ThrottlingException", 429, "slow down", **{"retry-after": "2"}))
    )
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call())
    await provider.aclose()
    assert raised.value.retry_after == 2.0


async def test_error_text_never_carries_credentials():
    echoed = f"User arn:aws:iam::123:user/x with key {KEY_ID} and secret {SECRET} is not authorized"
    for code in ("AccessDeniedException", "ValidationException"):
        provider = stub_provider(StubClient(error=client_error(code, 400, echoed)))
        with pytest.raises(ProviderError) as raised:
            await provider.complete(call())
        await provider.aclose()
        assert KEY_ID not in str(raised.value) and SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url=UNUSED_ENDPOINT), "connection"),
        (botocore.exceptions.ConnectionClosedError(endpoint_url=UNUSED_ENDPOINT), "connection"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url=UNUSED_ENDPOINT), "timeout"),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url=UNUSED_ENDPOINT), "timeout"),
        (urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"), "connection"),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), "timeout"),
        (botocore.exceptions.NoCredentialsError(), "auth"),
        (botocore.exceptions.ParamValidationError(report="Invalid type for parameter"), "bad_request"),
        (botocore.eventstream.ChecksumMismatch(1, 2), "server_error"),
        (botocore.parsers.ResponseParserError("unparseable"), "server_error"),
    ],
)
async def test_transport_and_sdk_errors(error, kind):
    provider = stub_provider(StubClient(error=error))
    with pytest.raises(ProviderError) as raised:
        await provider.complete(call())
    await provider.aclose()
    assert raised.value.kind == kind


# -- streams ----------------------------------------------------------------------------------


def text_event(text: str, index: int = 0) -> dict[str, Any]:
    return {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"text": text}}}


START = {"messageStart": {"role": "assistant"}}
METADATA = {"metadata": {"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}, "metrics": {}}}


def stop_event(reason: str = "end_turn") -> dict[str, Any]:
    return {"messageStop": {"stopReason": reason}}


async def test_stream_holds_the_finish_for_the_usage_that_follows():
    events = [START, text_event("Hel"), text_event("lo."), {"contentBlockStop": {"contentBlockIndex": 0}}]
    provider = stub_provider(StubClient(events=StubEvents([*events, stop_event(), METADATA])))
    chunks = await collect(provider)
    await provider.aclose()
    assert chunks == [Chunk(text="Hel"), Chunk(text="lo."), Chunk(finish_reason="stop", usage=Usage(9, 4))]


async def test_stream_that_ends_at_message_stop_is_complete():
    provider = stub_provider(
        StubClient(events=StubEvents([START, text_event("Hi."), stop_event("max_tokens")]))
    )
    chunks = await collect(provider)
    await provider.aclose()
    assert chunks[-1] == Chunk(finish_reason="length")


async def test_stream_cut_after_message_stop_is_still_complete():
    cut = urllib3.exceptions.ProtocolError("Connection broken")
    provider = stub_provider(StubClient(events=StubEvents([START, text_event("Hi."), stop_event(), cut])))
    chunks = await collect(provider)
    await provider.aclose()
    assert chunks[-1] == Chunk(finish_reason="stop")


async def test_stream_without_message_stop_has_no_finish():
    # The engine judges such a stream broken; the adapter only reports what came.
    provider = stub_provider(StubClient(events=StubEvents([START, text_event("Hi"), METADATA])))
    chunks = await collect(provider)
    await provider.aclose()
    assert [chunk.finish_reason for chunk in chunks] == [None]


async def test_stream_tool_use_is_assembled_and_handed_over_whole():
    events = [
        START,
        text_event("Checking."),
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tu1", "name": "weather"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 2,
                "start": {"toolUse": {"toolUseId": "tu2", "name": "clock"}},
            }
        },
        {"contentBlockStop": {"contentBlockIndex": 2}},
        stop_event("tool_use"),
        METADATA,
    ]
    provider = stub_provider(StubClient(events=StubEvents(events)))
    chunks = await collect(provider)
    await provider.aclose()
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].tool_calls == (
        ToolCall("tu1", "weather", '{"city": "Paris"}'),
        ToolCall("tu2", "clock", "{}"),
    )


async def test_stream_guardrail_is_a_content_filter_finish():
    provider = stub_provider(
        StubClient(events=StubEvents([START, stop_event("guardrail_intervened"), METADATA]))
    )
    chunks = await collect(provider)
    await provider.aclose()
    assert chunks[-1].finish_reason == "content_filter"  # the engine raises content_filter on it


async def test_stream_malformed_events_are_skipped_with_a_warning():
    events = [
        START,
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": 42}}},
        {"contentBlockDelta": {"contentBlockIndex": 5, "delta": {"toolUse": {"input": "{}"}}}},
        {"contentBlockDelta": {}},
        text_event("Fine."),
        {"reasoningContent": {"text": "a future event"}},
        stop_event(),
    ]
    provider = stub_provider(StubClient(events=StubEvents(events)))
    chunks = await collect(provider)
    await provider.aclose()
    assert [bool(chunk.warning) for chunk in chunks] == [True, True, True, False, False]
    assert chunks[3].text == "Fine." and chunks[4].finish_reason == "stop"


async def test_stream_exception_event_is_typed():
    throttled = botocore.exceptions.EventStreamError(
        {"Error": {"Code": "throttlingException", "Message": "Too many tokens, please wait."}},
        "ConverseStream",
    )
    provider = stub_provider(StubClient(events=StubEvents([START, text_event("Hi"), throttled])))
    received: list[Chunk] = []
    with pytest.raises(ProviderError) as raised:
        async for chunk in provider.stream(call()):
            received.append(chunk)
    await provider.aclose()
    assert received == [Chunk(text="Hi")]
    assert (raised.value.kind, raised.value.status) == (ErrorKind.RATE_LIMITED, None)


async def test_stream_bad_frame_is_a_server_error():
    events = StubEvents([START, botocore.eventstream.ChecksumMismatch(1, 2)])
    provider = stub_provider(StubClient(events=events))
    with pytest.raises(ProviderError) as raised:
        await collect(provider)
    await provider.aclose()
    assert raised.value.kind is ErrorKind.SERVER_ERROR
    assert events.closed.is_set()


async def test_cancelled_stream_closes_the_upstream_and_frees_its_thread():
    gate = threading.Event()
    events = StubEvents([START, text_event("Hi"), "block", text_event("never"), stop_event()], gate)
    client = StubClient(answer([{"text": "next call"}]), events=events)
    provider = stub_provider(client, limits={"max_concurrency": 1})
    chunks = provider.stream(call())
    assert (await anext(chunks)).text == "Hi"
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)  # the only pool thread now blocks in next()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert events.closed.is_set()
    # One pool thread: this call can only run if the cancelled stream gave its thread back.
    reply = await asyncio.wait_for(provider.complete(call()), 2)
    await provider.aclose()
    assert reply.text == "next call"


async def test_consumer_that_stops_early_closes_the_upstream():
    events = StubEvents([START, text_event("Hi"), text_event(" there"), stop_event()])
    provider = stub_provider(StubClient(events=events))
    chunks = provider.stream(call())
    assert (await anext(chunks)).text == "Hi"
    await chunks.aclose()
    await provider.aclose()
    assert events.closed.is_set()


async def test_stream_read_to_the_end_leaves_the_connection_to_botocore():
    events = StubEvents([START, text_event("Hi"), stop_event(), METADATA])
    provider = stub_provider(StubClient(events=events))
    await collect(provider)
    await provider.aclose()
    assert not events.closed.is_set()  # botocore returns a fully read connection to its pool


# -- boto3 against the fake upstream, through the router ------------------------------------


def make_router(upstream: FakeUpstream, route: dict[str, Any] | None = None, **provider: Any) -> Router:
    capabilities = {"tools": True, "prefill": True}
    policy = Policy.model_validate(
        {
            "providers": {
                "aws": {
                    "type": "bedrock",
                    "region": "us-east-1",
                    "base_url": upstream.bedrock_url,
                    "aws_access_key_id": KEY_ID,
                    "aws_secret_access_key": SECRET,
                    "breaker": {"fail_max": 100},
                    **provider,
                }
            },
            "targets": {
                "primary": {
                    "provider": "aws",
                    "model": "primary-model",
                    "price": {"input": 1.0, "output": 2.0},
                    "context_window": 8000,
                    "capabilities": capabilities,
                },
                "secondary": {
                    "provider": "aws",
                    "model": "secondary-model",
                    "context_window": 200_000,
                    "capabilities": capabilities,
                },
            },
            "routes": {
                "chat": {
                    "targets": ["primary", "secondary"],
                    "retry": {"backoff_base": "10ms", "backoff_max": "1s"},
                    **(route or {}),
                }
            },
        }
    )
    return Router(policy, seed=3)


def trail(result: Any) -> list[tuple[str, str]]:
    return [(attempt.target, attempt.outcome) for attempt in result.attempts]


async def stream_all(router: Router, messages: Any = USER, **options: Any) -> tuple[str, Completion]:
    text, final = "", None
    async for item in router.stream("chat", messages, **options):
        if isinstance(item, Completion):
            final = item
        else:
            text += item
    assert final is not None
    return text, final


async def test_answer_usage_and_cost(fake_upstream):
    fake_upstream.set_reply("primary-model", "Hello from Bedrock.")
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", USER, max_tokens=20, temperature=0.1, stop=["END"])
        text, streamed = await stream_all(router)
    assert result.text == text == "Hello from Bedrock."
    assert (result.finish_reason, streamed.finish_reason) == ("stop", "stop")
    assert (result.target, result.provider, result.model) == ("primary", "aws", "primary-model")
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert streamed.usage == result.usage  # the stream's usage comes in the metadata event
    assert result.cost_usd == pytest.approx(
        result.usage.input_tokens * 1e-6 + result.usage.output_tokens * 2e-6
    )
    assert [(r.wire, r.path) for r in fake_upstream.log] == [
        ("bedrock", "/model/primary-model/converse"),
        ("bedrock", "/model/primary-model/converse-stream"),
    ]


async def test_models_listing(fake_upstream):
    fake_upstream.set_reply("anthropic.claude-test", "unused")
    provider = BedrockProvider("aws", make_spec(fake_upstream.bedrock_url))
    assert "anthropic.claude-test" in await provider.list_models()
    await provider.aclose()
    assert fake_upstream.log[-1].path == "/foundation-models"


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls(fake_upstream, streaming):
    fake_upstream.set_tool_call("primary-model", "weather", {"city": "Paris"})
    async with make_router(fake_upstream) as router:
        options = {"tools": TOOLS, "tool_choice": "auto"}
        if streaming:
            _, result = await stream_all(router, **options)
        else:
            result = await router.complete("chat", USER, **options)
    assert result.finish_reason == "tool_calls"
    (tool_call,) = result.tool_calls
    assert tool_call.name == "weather" and json.loads(tool_call.arguments) == {"city": "Paris"}
    assert tool_call.id.startswith("tooluse_")


async def test_tool_results_and_prefill_are_accepted(fake_upstream):
    history = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [{"id": "t1", "function": {"name": "weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "assistant", "content": "The weather is"},
    ]
    async with make_router(fake_upstream) as router:
        result = await router.complete("chat", history, tools=TOOLS)
    assert result.text and trail(result) == [("primary", "ok")]


@pytest.mark.parametrize(
    ("fault", "kind", "status", "expected"),
    [
        (Fault.rate_limited(), "rate_limited", 429, ["rate_limited", "rate_limited", "ok@secondary"]),
        (Fault.bedrock_error("ModelNotReadyException"), "rate_limited", 429, ["rate_limited", "ok"]),
        (
            Fault.bedrock_error("ServiceQuotaExceededException", 400),
            "rate_limited",
            400,
            ["rate_limited", "ok"],
        ),
        (Fault.server_error(), "server_error", 500, ["server_error", "ok"]),
        (Fault.unavailable(), "server_error", 503, ["server_error", "server_error", "ok@secondary"]),
        (Fault.bedrock_error("ModelErrorException"), "server_error", 424, ["server_error", "ok"]),
        (Fault.bedrock_error("ModelTimeoutException"), "timeout", 408, ["timeout", "ok@secondary"]),
        (Fault.unauthorized(), "auth", 401, ["auth", "ok@secondary"]),
        (Fault.forbidden(), "auth", 403, ["auth", "ok@secondary"]),
        (Fault.http(404), "auth", 404, ["auth", "ok@secondary"]),
        (Fault.context_length(), "context_length", 400, ["context_length", "ok@secondary"]),
        (Fault.reset(), "connection", None, ["connection", "connection", "ok@secondary"]),
        (Fault.html(), "server_error", None, ["server_error", "server_error", "ok@secondary"]),
        (Fault.invalid_json(), "server_error", None, ["server_error", "server_error", "ok@secondary"]),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_faults_before_output(fake_upstream, fault, kind, status, expected, streaming):
    times = 1 if expected[-1] == "ok" else None
    fake_upstream.add_fault("primary-model", fault, times=times)
    async with make_router(fake_upstream) as router:
        result = (await stream_all(router))[1] if streaming else await router.complete("chat", USER)
    outcomes = [
        attempt.outcome if attempt.target == "primary" else f"{attempt.outcome}@{attempt.target}"
        for attempt in result.attempts
    ]
    assert outcomes == expected
    assert result.attempts[0].status == status
    assert result.text


async def test_bad_request_is_not_retried_nor_failed_over(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.http(400, "Malformed input request."))
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as raised:
            await router.complete("chat", USER)
    assert raised.value.kind is ErrorKind.BAD_REQUEST
    assert [(a.target, a.outcome) for a in raised.value.attempts] == [("primary", "bad_request")]


@pytest.mark.parametrize("streaming", [False, True])
async def test_guardrail_is_a_content_filter(fake_upstream, streaming):
    fake_upstream.add_fault("primary-model", Fault.content_filter())
    async with make_router(fake_upstream) as router:
        with pytest.raises(ProviderError) as raised:
            await (stream_all(router) if streaming else router.complete("chat", USER))
    assert raised.value.kind is ErrorKind.CONTENT_FILTER
    assert fake_upstream.count("secondary-model") == 0  # no failover: another model would filter too


async def test_hang_times_out_without_blocking_the_event_loop(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.hang())
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.ensure_future(ticker())
    async with make_router(fake_upstream, {"latency_budget": {"per_attempt": "250ms"}}) as router:
        started = time.monotonic()
        result = await router.complete("chat", USER)
        elapsed = time.monotonic() - started
    done.set()
    await ticking
    assert trail(result) == [("primary", "timeout"), ("secondary", "ok")]
    assert 0.25 <= elapsed < 1.0
    assert len(gaps) >= 20 and max(gaps) < 0.1


async def test_slow_first_token_fails_over(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.slow_first_token(5.0))
    async with make_router(fake_upstream, {"latency_budget": {"first_token": "200ms"}}) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", "timeout"), ("secondary", "ok")] and text


async def test_cut_stream_is_never_a_success(fake_upstream):
    fake_upstream.set_reply("primary-model", "one two three four five six")
    fake_upstream.add_fault("primary-model", Fault.cut(3))  # messageStart, two words, then the cut
    # An idle budget makes complete() stream from the upstream too.
    async with make_router(
        fake_upstream, {"stream_recovery": "raise", "latency_budget": {"idle": "1s"}}
    ) as router:
        with pytest.raises(StreamBroken) as raised:
            await stream_all(router)
        restarted = await router.complete("chat", USER)
    assert raised.value.received == "one two"
    assert trail(restarted) == [("primary", "stream_broken"), ("secondary", "ok")]


async def test_stalled_stream_is_broken_and_gives_its_thread_back(fake_upstream):
    fake_upstream.add_fault("primary-model", Fault.stall(2, 10.0), times=1)  # after the first word
    # One pool thread: the next call can only run once the stalled read was woken and closed.
    async with make_router(
        fake_upstream,
        {"stream_recovery": "raise", "latency_budget": {"idle": "150ms"}},
        limits={"max_concurrency": 1},
    ) as router:
        started = time.monotonic()
        with pytest.raises(StreamBroken, match="stalled") as raised:
            await stream_all(router)
        after = await router.complete("chat", USER)
    assert raised.value.received == "Hello"
    assert after.target == "primary" and time.monotonic() - started < 1.0  # not the 10 s stall


async def test_malformed_event_is_skipped_and_noted(fake_upstream):
    fake_upstream.set_reply("primary-model", "alpha beta gamma")
    fake_upstream.add_fault("primary-model", Fault.malformed(2))
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert text == "alpha beta gamma" and final.target == "primary"
    assert any("malformed" in warning for warning in final.warnings)


async def test_stream_without_metadata_is_complete(fake_upstream):
    fake_upstream.set_reply("primary-model", "finished properly")
    fake_upstream.add_fault("primary-model", Fault.no_done())
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert (
        text == "finished properly" and final.finish_reason == "stop" and trail(final) == [("primary", "ok")]
    )


@pytest.mark.parametrize(
    ("exception", "kind"),
    [("throttlingException", "rate_limited"), ("modelStreamErrorException", "server_error")],
)
async def test_exception_in_stream_before_output_is_typed(fake_upstream, exception, kind):
    fake_upstream.add_fault("primary-model", Fault.exception_in_stream(exception, 1), times=1)
    async with make_router(fake_upstream) as router:
        text, final = await stream_all(router)
    assert trail(final) == [("primary", kind), ("primary", "ok")] and text


async def test_exception_in_stream_after_output(fake_upstream):
    fake_upstream.set_reply("primary-model", "one two three")
    fake_upstream.add_fault("primary-model", Fault.exception_in_stream("ModelStreamErrorException", 2))
    async with make_router(
        fake_upstream, {"stream_recovery": "raise", "latency_budget": {"idle": "1s"}}
    ) as router:
        with pytest.raises(StreamBroken, match="server_error") as raised:
            await stream_all(router)
        restarted = await router.complete("chat", USER)
    assert raised.value.received == "one"
    assert trail(restarted) == [("primary", "stream_broken"), ("secondary", "ok")]


async def test_credentials_never_appear_in_errors(fake_upstream):
    fake_upstream.add_fault("*", Fault.forbidden())
    async with make_router(fake_upstream) as router:
        with pytest.raises(AllTargetsFailed) as raised:
            await router.complete("chat", USER)
    texts = [str(raised.value), *(str(attempt) for attempt in raised.value.attempts)]
    assert all(KEY_ID not in text and SECRET not in text for text in texts)
    assert [a.outcome for a in raised.value.attempts] == ["auth", "auth"]
