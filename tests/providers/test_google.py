"""The Google adapter (`gemini`, `vertex`): request translation (pure), then the real google-genai SDK
against the loopback fake upstream's Google wire, under every fault; Vertex AI with a real
service-account key file whose token comes from the fake upstream."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors as genai_errors

from router import ErrorKind, Policy, PolicyError, ProviderError, Router
from router.chaos.sim_provider import SimulatedUpstream
from router.chaos.upstream import reply_for
from router.policy.loader import parse_policy
from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk
from router.providers.google import GoogleProvider, translate
from router.providers.registry import PROVIDER_TYPES
from router.testing import FakeClock, FakeUpstream, Fault, parse_fault_spec
from router.testing.wires.google import SAFETY_CATEGORY, TOKEN_PATH

SECRET = "gemini-test-secret-0123456789abcdef"
MODEL = "gemini-2.5-flash"
USER = [{"role": "user", "content": "Tell me something."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n not really an image").decode()


def service_account_file(directory: Path, token_uri: str, private_key: str) -> Path:
    """A service-account key file as Google Cloud issues it, its token endpoint at `token_uri`."""
    directory.mkdir(exist_ok=True)
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "router-test",
                "private_key_id": "0123456789abcdef",
                "private_key": private_key,
                "client_email": "router@router-test.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path


def key_body(pem: str) -> str:
    """The base64 of a PEM key, as any leak of it would show."""
    return "".join(pem.strip().splitlines()[1:-1])


def gemini(upstream: FakeUpstream, **fields: Any) -> GoogleProvider:
    spec = ProviderSpec(type="gemini", base_url=upstream.google_base_url, **fields)
    return GoogleProvider("gemini", spec, SECRET, vertex=False)


def vertex(upstream: FakeUpstream, credentials_file: Path, **fields: Any) -> GoogleProvider:
    spec = ProviderSpec(
        type="vertex",
        base_url=upstream.google_base_url,
        project="router-test",
        location="us-central1",
        credentials_file=str(credentials_file),
        **fields,
    )
    return GoogleProvider("vertex", spec, None, vertex=True)


@pytest.fixture
async def provider(fake_upstream: FakeUpstream) -> AsyncIterator[GoogleProvider]:
    made = gemini(fake_upstream)
    yield made
    await made.aclose()


def call(messages: list[dict[str, Any]] | None = None, timeout: float = 5.0, **options: Any) -> Call:
    max_tokens = options.pop("max_tokens", None)
    temperature = options.pop("temperature", None)
    return Call(MODEL, messages or USER, timeout, max_tokens, temperature, options)


async def chunks(provider: GoogleProvider, request: Call) -> list[Chunk]:
    return [chunk async for chunk in provider.stream(request)]


# -- translation, without a server ---------------------------------------------------------


def test_system_and_roles_become_system_instruction_and_user_model_turns():
    contents, config = translate(
        call(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": "three"},
            ],
            max_tokens=50,
            temperature=0.2,
            stop="END",
            top_p=0.9,
            seed=7,
        )
    )
    assert config["system_instruction"] == "Be brief.\n\nAnswer in French."
    assert [(c["role"], c["parts"]) for c in contents] == [
        ("user", [{"text": "one"}]),
        ("model", [{"text": "two"}]),
        ("user", [{"text": "three"}]),
    ]
    assert (config["max_output_tokens"], config["temperature"], config["top_p"], config["seed"]) == (
        50, 0.2, 0.9, 7,
    )  # fmt: skip
    assert config["stop_sequences"] == ["END"]
    assert config["http_options"] == {"timeout": 5000}
    assert config["automatic_function_calling"] == {"disable": True}


def test_tool_calls_and_results_become_function_parts_named_after_the_call():
    contents, config = translate(
        call(
            [
                *USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            ],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    assert contents[1] == {
        "role": "model",
        "parts": [{"function_call": {"name": "get_weather", "args": {"city": "Paris"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"function_response": {"name": "get_weather", "response": {"content": "Sunny"}}}],
    }
    [declaration] = config["tools"][0]["function_declarations"]
    assert declaration == {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters_json_schema": WEATHER_TOOL["function"]["parameters"],
    }
    assert config["tool_config"] == {
        "function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}
    }
    _, required = translate(call(tools=[WEATHER_TOOL], tool_choice="required"))
    assert required["tool_config"] == {"function_calling_config": {"mode": "ANY"}}


def test_images_data_urls_inline_and_urls_as_file_data():
    contents, _ = translate(
        call(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?size=2"}},
                    ],
                }
            ]
        )
    )
    parts = contents[0]["parts"]
    assert parts[1] == {"inline_data": {"mime_type": "image/png", "data": base64.b64decode(PNG)}}
    assert parts[2] == {
        "file_data": {"file_uri": "https://example.com/cat.jpg?size=2", "mime_type": "image/jpeg"}
    }


def test_response_format_thinking_and_extra_body():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    _, config = translate(
        call(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    )
    assert (config["response_mime_type"], config["response_json_schema"]) == ("application/json", schema)
    _, config = translate(call(response_format={"type": "json_object"}))
    assert config["response_mime_type"] == "application/json"
    _, config = translate(call(), thinking_budget=2048)
    assert config["thinking_config"] == {"thinking_budget": 2048}
    _, config = translate(call(reasoning_effort="low"), thinking_budget=2048)  # the call's wins
    assert config["thinking_config"] == {"thinking_budget": 1024}
    _, config = translate(call(extra_body={"labels": {"team": "a"}}))
    assert config["http_options"]["extra_body"] == {"labels": {"team": "a"}}
    assert "thinking_config" not in translate(call())[1]


@pytest.mark.parametrize(
    ("messages", "options", "expected"),
    [
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
            {},
            "image",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y"}}]}],
            {},
            "extension",
        ),
        ([*USER, {"role": "tool", "tool_call_id": "nowhere", "content": "x"}], {}, "answers no tool call"),
        (USER, {"reasoning_effort": "extreme"}, "reasoning_effort"),
        (USER, {"tools": [{"type": "retrieval"}]}, "only function tools"),
    ],
)
async def test_what_the_wire_cannot_express_is_a_bad_request_before_any_call(
    fake_upstream, provider, messages, options, expected
):
    with pytest.raises(ProviderError) as caught:
        await provider.complete(call(messages, **options))
    assert caught.value.kind is ErrorKind.BAD_REQUEST and expected in caught.value.message
    assert fake_upstream.count() == 0


def test_the_registry_entries():
    gemini_type, vertex_type = PROVIDER_TYPES["gemini"], PROVIDER_TYPES["vertex"]
    assert (gemini_type.wire, gemini_type.key_variable, gemini_type.litellm) == (
        "google",
        "GEMINI_API_KEY",
        "gemini",
    )
    assert (vertex_type.wire, vertex_type.needs, vertex_type.litellm) == ("google", ("project",), "vertex_ai")
    assert PROVIDER_TYPES["gemini_openai"].preset is not None
    with pytest.raises(ValueError, match="a vertex provider needs project"):
        ProviderSpec(type="vertex")
    with pytest.raises(ValueError, match="only for vertex providers"):
        ProviderSpec(type="gemini", project="p")
    with pytest.raises(ValueError, match="only for gemini, vertex providers"):
        ProviderSpec(type="openai", thinking_budget=1024)


# -- the real SDK against the fake upstream ------------------------------------------------


async def test_complete_text_usage_and_finish(fake_upstream, provider):
    fake_upstream.set_reply(MODEL, "Hello from Gemini.")
    reply = await provider.complete(call([{"role": "system", "content": "Be kind."}, *USER]))
    assert (reply.text, reply.finish_reason, reply.tool_calls) == ("Hello from Gemini.", "stop", ())
    assert reply.usage.input_tokens == len("Be kind.Tell me something.") // 4 + 1
    assert reply.usage.output_tokens == len("Hello from Gemini.") // 4 + 1
    [record] = fake_upstream.log
    assert (record.wire, record.path) == ("google", f"/v1beta/models/{MODEL}:generateContent")


async def test_stream_a_chunk_per_word_then_the_finish_with_usage(fake_upstream, provider):
    fake_upstream.set_reply(MODEL, "one two three")
    got = await chunks(provider, call())
    assert [chunk.text for chunk in got[:-1]] == ["one", " two", " three"]
    assert got[-1].finish_reason == "stop" and got[-1].usage is not None
    assert got[-1].usage.output_tokens == len("one two three") // 4 + 1
    assert fake_upstream.log[0].path.endswith(":streamGenerateContent")


@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_calls_come_back_whole(fake_upstream, provider, streamed):
    fake_upstream.set_tool_call(MODEL, "get_weather", {"city": "Paris"})
    request = call(tools=[WEATHER_TOOL])
    if streamed:
        final = (await chunks(provider, request))[-1]
        finish, tool_calls = final.finish_reason, final.tool_calls
    else:
        reply = await provider.complete(request)
        finish, tool_calls = reply.finish_reason, reply.tool_calls
    [tool_call] = tool_calls
    assert finish == "tool_calls"
    assert (tool_call.name, json.loads(tool_call.arguments)) == ("get_weather", {"city": "Paris"})
    assert tool_call.id


async def test_an_image_and_a_tool_round_trip_go_through_the_sdk(fake_upstream, provider):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
    ]
    reply = await provider.complete(call(messages, tools=[WEATHER_TOOL]))
    assert reply.text == f"Hello from {MODEL}."
    assert fake_upstream.log[0].status == 200


async def test_model_listing_on_both_apis(fake_upstream, provider, tmp_path, private_key_pem):
    fake_upstream.set_reply("gemini-2.5-pro", "x")
    fake_upstream.set_reply(MODEL, "y")
    assert await provider.list_models() == ["gemini-2.5-pro", MODEL]
    sa = service_account_file(tmp_path, fake_upstream.google_base_url + TOKEN_PATH, private_key_pem)
    on_vertex = vertex(fake_upstream, sa)
    try:
        assert await on_vertex.list_models() == ["gemini-2.5-pro", MODEL]
    finally:
        await on_vertex.aclose()
    assert [record.path for record in fake_upstream.log] == [
        "/v1beta/models",
        "/v1beta1/publishers/google/models",
    ]


async def test_vertex_with_a_service_account_key_file(fake_upstream, tmp_path, private_key_pem):
    sa = service_account_file(tmp_path, fake_upstream.google_base_url + TOKEN_PATH, private_key_pem)
    provider = vertex(fake_upstream, sa)
    try:
        reply = await provider.complete(call())
        streamed = await chunks(provider, call())
    finally:
        await provider.aclose()
    assert reply.text == f"Hello from {MODEL}." == "".join(chunk.text for chunk in streamed)
    prefix = f"/v1beta1/projects/router-test/locations/us-central1/publishers/google/models/{MODEL}"
    assert [record.path for record in fake_upstream.log] == [
        f"{prefix}:generateContent",
        f"{prefix}:streamGenerateContent",
    ]


# -- every failure, a kind -----------------------------------------------------------------

ERRORS = [
    ("unavailable", Fault.unavailable(), ErrorKind.SERVER_ERROR, 503, "UNAVAILABLE"),
    ("internal", Fault.server_error(), ErrorKind.SERVER_ERROR, 500, "INTERNAL"),
    ("rate-limited", Fault.rate_limited(retry_after=2), ErrorKind.RATE_LIMITED, 429, "RESOURCE_EXHAUSTED"),
    ("unauthenticated", Fault.unauthorized(), ErrorKind.AUTH, 401, "credentials rejected"),
    ("permission", Fault.forbidden(), ErrorKind.AUTH, 403, "permission denied"),
    ("not-found", Fault.http(404), ErrorKind.AUTH, 404, "unknown model"),
    (
        "region",
        Fault.http(400, "User location is not supported for the API use.", type="FAILED_PRECONDITION"),
        ErrorKind.AUTH,
        400,
        "FAILED_PRECONDITION: User location is not supported",
    ),
    ("context", Fault.context_length(1_000_000), ErrorKind.CONTEXT_LENGTH, 400, "input token count"),
    ("invalid", Fault.http(400), ErrorKind.BAD_REQUEST, 400, "INVALID_ARGUMENT"),
    (
        "proxy-page",
        Fault.http(502, "<html>bad gateway</html>", type="Bad Gateway"),
        ErrorKind.SERVER_ERROR,
        502,
        "HTTP 502",
    ),
]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    ("fault", "kind", "status", "detail"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
async def test_error_statuses_map_to_kinds(fake_upstream, provider, streamed, fault, kind, status, detail):
    fake_upstream.add_fault(MODEL, fault)
    with pytest.raises(ProviderError) as caught:
        if streamed:
            await chunks(provider, call())
        else:
            await provider.complete(call())
    error = caught.value
    assert (error.kind, error.status) == (kind, status)
    assert detail in error.message
    assert fake_upstream.count() == 1  # the SDK's retries are off


async def test_a_rate_limit_carries_its_delay_from_the_header(fake_upstream, provider):
    fake_upstream.add_fault(MODEL, Fault.rate_limited(retry_after_ms=1500))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(call())
    assert caught.value.retry_after == pytest.approx(1.5)


def test_a_rate_limit_carries_the_delay_of_its_retry_info(provider):
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
            ],
        }
    }
    error = provider._classify(genai_errors.ClientError(429, body, None))
    assert (error.kind, error.retry_after) == (ErrorKind.RATE_LIMITED, 37.0)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_safety_block_is_a_content_filter_with_its_category(fake_upstream, provider, streamed):
    fake_upstream.add_fault(MODEL, Fault.content_filter())
    with pytest.raises(ProviderError) as caught:
        if streamed:
            await chunks(provider, call())
        else:
            await provider.complete(call())
    assert caught.value.kind is ErrorKind.CONTENT_FILTER
    assert "SAFETY" in caught.value.message and SAFETY_CATEGORY in caught.value.message


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.overloaded_in_stream(2), ErrorKind.SERVER_ERROR),
        (Fault.exception_in_stream("throttlingException", 2), ErrorKind.RATE_LIMITED),
        (Fault.exception_in_stream("validationException", 1), ErrorKind.BAD_REQUEST),
        (Fault.malformed(1), ErrorKind.SERVER_ERROR),
        (Fault.cut(2), ErrorKind.CONNECTION),
    ],
    ids=["overloaded", "throttled", "invalid", "malformed", "cut"],
)
async def test_errors_inside_a_stream_after_text_began(fake_upstream, provider, fault, kind):
    fake_upstream.set_reply(MODEL, "one two three four")
    fake_upstream.add_fault(MODEL, fault)
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(call()):
            received.append(chunk.text)
    assert caught.value.kind is kind
    assert received == ["one", " two"][: fault.after_chunks]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("fault", [Fault.html(), Fault.invalid_json()], ids=["html", "invalid-json"])
async def test_garbage_bodies_are_typed_server_errors(fake_upstream, provider, streamed, fault):
    fake_upstream.add_fault(MODEL, fault)
    with pytest.raises(ProviderError) as caught:
        if streamed:
            await chunks(provider, call())
        else:
            await provider.complete(call())
    assert caught.value.kind is ErrorKind.SERVER_ERROR


async def test_an_answer_without_candidates_is_a_server_error(fake_upstream, provider):
    fake_upstream.add_fault(MODEL, Fault.empty_choices())
    with pytest.raises(ProviderError, match="no candidate") as caught:
        await provider.complete(call())
    assert caught.value.kind is ErrorKind.SERVER_ERROR


async def test_truncated_and_unfinished_answers(fake_upstream, provider):
    fake_upstream.set_reply(MODEL, "one two three four")
    fake_upstream.add_fault(MODEL, Fault.truncated(), times=1)
    assert (await provider.complete(call())).finish_reason == "length"
    fake_upstream.add_fault(MODEL, Fault.no_finish(), times=1)
    got = await chunks(provider, call())
    assert [chunk.text for chunk in got] == ["one", " two"]  # no finish: the engine judges it broken


async def test_transport_failures_and_bounds(fake_upstream):
    small = gemini(fake_upstream, max_response_bytes=64 * 1024)
    try:
        fake_upstream.add_fault(MODEL, Fault.reset(), times=1)
        with pytest.raises(ProviderError) as reset:
            await small.complete(call())
        fake_upstream.add_fault(MODEL, Fault.hang(), times=1)
        with pytest.raises(ProviderError) as hang:
            await small.complete(call(timeout=0.2))
        fake_upstream.add_fault(MODEL, Fault.huge(200 * 1024), times=1)
        with pytest.raises(ProviderError) as huge:
            await small.complete(call())
    finally:
        await small.aclose()
    assert reset.value.kind is ErrorKind.CONNECTION
    assert hang.value.kind is ErrorKind.TIMEOUT
    assert huge.value.kind is ErrorKind.SERVER_ERROR and "max_response_bytes" in huge.value.message


# -- secrets -------------------------------------------------------------------------------


async def test_an_api_key_echoed_by_the_upstream_is_blanked(fake_upstream, provider):
    fake_upstream.add_fault(MODEL, Fault.http(400, f"API key not valid: {SECRET}"))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(call())
    assert SECRET not in str(caught.value) and SECRET not in repr(provider)


async def test_a_service_accounts_private_key_never_shows(fake_upstream, tmp_path, private_key_pem, caplog):
    caplog.set_level(logging.DEBUG)
    secret = key_body(private_key_pem)
    refused = service_account_file(
        tmp_path, fake_upstream.google_base_url + "/no-token-here", private_key_pem
    )
    provider = vertex(fake_upstream, refused)
    with pytest.raises(ProviderError) as denied:
        await provider.complete(call())
    assert denied.value.kind is ErrorKind.AUTH and "token endpoint" in denied.value.message
    await provider.aclose()

    damaged = private_key_pem[:300] + "\n-----END PRIVATE KEY-----\n"  # the key parser chokes on it
    broken = service_account_file(tmp_path / "broken", TOKEN_PATH, damaged)
    provider = vertex(fake_upstream, broken)
    with pytest.raises(ProviderError) as unreadable:
        await provider.complete(call())
    assert (
        unreadable.value.kind is ErrorKind.AUTH
        and "not a service-account key file" in unreadable.value.message
    )
    await provider.aclose()

    provider = vertex(fake_upstream, tmp_path / "missing.json")
    with pytest.raises(ProviderError, match="cannot be read"):
        await provider.complete(call())
    await provider.aclose()

    shown = [str(denied.value), repr(denied.value), str(unreadable.value), repr(provider), caplog.text]
    assert not any(secret[:40] in text or "PRIVATE KEY" in text for text in shown)


async def test_vertex_through_the_router_with_its_service_account(fake_upstream, tmp_path, private_key_pem):
    sa = service_account_file(tmp_path, fake_upstream.google_base_url + TOKEN_PATH, private_key_pem)
    policy = Policy.model_validate(
        {
            "providers": {
                "vertex": {
                    "type": "vertex",
                    "base_url": fake_upstream.google_base_url,
                    "project": "router-test",
                    "location": "europe-west4",
                    "credentials_file": str(sa),
                    "thinking_budget": 0,
                }
            },
            "targets": {"flash": {"provider": "vertex", "model": MODEL}},
            "routes": {"chat": {"targets": ["flash"]}},
        }
    )
    async with Router(policy) as router:
        result = await router.complete("chat", USER)
    assert (result.text, result.provider) == (f"Hello from {MODEL}.", "vertex")
    assert "/locations/europe-west4/" in fake_upstream.log[0].path


# -- the simulation reaches the adapter's verdicts ------------------------------------------

AGREED = [
    "503",
    "500",
    "429:retry_after=2",
    "401",
    "403",
    "context_length",
    "content_filter",
    "reset",
    "html",
    "invalid_json",
    "empty_choices",
    "truncated",
    "cut:2",
    "malformed:1",
    "overloaded_in_stream:2",
    "exception_in_stream:throttlingException,2",
]


async def outcome(provider: Any, streamed: bool) -> tuple[Any, ...]:
    """What a call comes to: the text, finish and usage, or the error's kind, status and delay."""
    try:
        if streamed:
            got = [chunk async for chunk in provider.stream(call())]
            finish = next((c.finish_reason for c in got if c.finish_reason), None)
            return "".join(c.text for c in got), finish, next((c.usage for c in got if c.usage), None)
        reply = await provider.complete(call())
        return reply.text, reply.finish_reason, reply.usage
    except ProviderError as error:
        return error.kind, error.status, error.retry_after


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("fault", AGREED)
async def test_the_simulated_google_provider_agrees_with_the_adapter(
    fake_upstream, provider, fault, streamed
):
    rule = parse_fault_spec(f"{MODEL}={fault}")
    fake_upstream.set_reply(MODEL, reply_for(MODEL))
    fake_upstream.add_fault(rule.model, rule.fault)
    real = await outcome(provider, streamed)
    simulated_upstream = SimulatedUpstream([rule], seed=0, clock=FakeClock())
    simulated = simulated_upstream.provider("gemini", ProviderSpec(type="gemini"))
    assert await outcome(simulated, streamed) == real
    assert [call.status for call in simulated_upstream.calls] == [
        record.status for record in fake_upstream.log
    ]


# -- answers too costly to parse -----------------------------------------------------------


class _Junk(http.server.BaseHTTPRequestHandler):
    """A Gemini answer padded with 150 000 values: more than the bound, in 300 KB."""

    BODY = json.dumps(
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
            "junk": [1] * 150_000,
        }
    ).encode()

    def do_POST(self) -> None:  # the stdlib names it
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(self.BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_an_answer_with_too_many_json_values_is_refused_unparsed():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Junk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    spec = ProviderSpec(type="gemini", base_url=f"http://127.0.0.1:{server.server_address[1]}")
    provider = GoogleProvider("gemini", spec, SECRET, vertex=False)
    try:
        with pytest.raises(ProviderError, match="JSON values") as caught:
            await provider.complete(call())
    finally:
        await provider.aclose()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert caught.value.kind is ErrorKind.SERVER_ERROR


def test_a_missing_service_account_key_file_is_reported_at_its_provider(tmp_path):
    text = f"""
providers:
  vertex:
    type: vertex
    project: p
    credentials_file: {tmp_path / "absent.json"}
targets:
  flash: {{provider: vertex, model: {MODEL}}}
routes:
  chat: {{targets: [flash]}}
"""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml", env={}, environment=True)
    assert "no such file" in str(caught.value) and "credentials_file" in str(caught.value)
    (tmp_path / "absent.json").write_text("{}")
    assert parse_policy(text, "policy.yaml", env={}, environment=True).providers["vertex"].project == "p"
