"""`AiohttpTransport` against the loopback fake upstream: the httpx2 exceptions the default transport
raises, streaming, timeouts, connections given back on cancel; and the policy switch.

Most tests run the same request over both transports and demand the same outcome: the SDKs and
our adapters must not be able to tell which transport is underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router import ErrorKind, Policy, ProviderError, Router
from router.policy.model import ProviderSpec
from router.providers.anthropic import AnthropicProvider
from router.providers.base import Call
from router.providers.openai import OpenAIProvider
from router.providers.transport import AiohttpTransport, sdk_http_client
from router.testing import FakeUpstream, Fault

TRANSPORTS = ("aiohttp", "httpx")
USER = [{"role": "user", "content": "Tell me something."}]
MODEL = "m"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_PROXY_VARIABLES += tuple(variable.upper() for variable in _PROXY_VARIABLES)


def make_transport(name: str, max_connections: int = 100) -> httpx2.AsyncBaseTransport:
    if name == "aiohttp":
        return AiohttpTransport(max_connections=max_connections)
    return httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=max_connections))


def client(transport: httpx2.AsyncBaseTransport, **timeouts: float) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5.0, **timeouts))


def chat_request(http: httpx2.AsyncClient, upstream: FakeUpstream, *, stream: bool = False) -> httpx2.Request:
    body = {"model": MODEL, "messages": USER, "stream": stream}
    return http.build_request("POST", f"{upstream.base_url}/chat/completions", json=body)


async def outcome(http: httpx2.AsyncClient, upstream: FakeUpstream, *, stream: bool) -> str:
    """`ok <bytes>` for a whole answer, or the name of the httpx2 exception raised on the way."""
    try:
        async with contextlib.aclosing(_read(http, upstream, stream)) as chunks:
            received = b"".join([chunk async for chunk in chunks])
    except httpx2.TransportError as error:
        return type(error).__name__
    return f"ok {len(received)}"


async def _read(http: httpx2.AsyncClient, upstream: FakeUpstream, stream: bool) -> AsyncIterator[bytes]:
    response = await http.send(chat_request(http, upstream, stream=stream), stream=True)
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()


async def received(upstream: FakeUpstream) -> None:
    """Until the upstream has received a request."""
    for _ in range(500):
        if upstream.log:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the upstream received nothing")


def connector(transport: AiohttpTransport) -> aiohttp.BaseConnector:
    """The aiohttp connector of the running loop's session (white-box: aiohttp's own count of connections)."""
    pool = transport._pools[asyncio.get_running_loop()]
    assert pool.session.connector is not None
    return pool.session.connector


def assert_released(transport: AiohttpTransport) -> None:
    assert transport.in_use == 0
    assert not connector(transport)._acquired  # aiohttp's connections handed out and not yet back


# -- the same httpx2 exception as the default transport, fault by fault ----------------------------


@pytest.mark.parametrize(
    ("fault", "stream", "expected"),
    [
        (None, False, "ok"),
        (None, True, "ok"),
        (Fault.reset(), False, "ReadError"),
        (Fault.hang(), False, "ReadTimeout"),
        (Fault.cut(2), True, "RemoteProtocolError"),
        (Fault.stall(1, 5.0), True, "ReadTimeout"),
        (Fault.server_error(), False, "ok"),
        (Fault.html(), False, "ok"),
        (Fault.invalid_json(), False, "ok"),
    ],
    ids=["answer", "stream", "reset", "hang", "cut", "stall", "500", "html", "invalid-json"],
)
async def test_each_fault_raises_what_the_default_transport_raises(fake_upstream, fault, stream, expected):
    if fault is not None:
        fake_upstream.add_fault(MODEL, fault)
    seen = {}
    for name in TRANSPORTS:
        async with client(make_transport(name), read=0.3) as http:
            seen[name] = await outcome(http, fake_upstream, stream=stream)
    assert seen["aiohttp"] == seen["httpx"]
    assert seen["aiohttp"].startswith(expected)


async def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in TRANSPORTS:
        async with client(make_transport(name)) as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/v1/models")


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: connection attempts get no answer at all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)  # let the handshakes land in the queue
    yield port
    for sock in (*fillers, listener):
        sock.close()


async def test_the_connect_timeout_is_honoured(unanswered_port):
    for name in TRANSPORTS:
        async with client(make_transport(name), connect=0.2) as http:
            started = time.monotonic()
            with pytest.raises(httpx2.ConnectTimeout):
                await http.get(f"http://127.0.0.1:{unanswered_port}/v1/models")
            assert 0.2 <= time.monotonic() - started < 1.0, name


async def test_the_read_timeout_is_honoured(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.hang())
    async with client(AiohttpTransport(), read=0.2) as http:
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await http.send(chat_request(http, fake_upstream))
        assert 0.2 <= time.monotonic() - started < 1.0


async def test_a_full_pool_raises_pool_timeout_then_frees_its_connection(fake_upstream):
    for name in TRANSPORTS:
        fake_upstream.clear_faults()
        fake_upstream.add_fault(MODEL, Fault.hang(), times=1)
        fake_upstream.reset_log()
        transport = make_transport(name, max_connections=1)
        async with client(transport, pool=0.2) as http:
            holder = asyncio.create_task(http.send(chat_request(http, fake_upstream)))
            await received(fake_upstream)  # the hanging request now holds the only connection
            started = time.monotonic()
            with pytest.raises(httpx2.PoolTimeout):
                await http.get(f"{fake_upstream.base_url}/models")
            assert 0.2 <= time.monotonic() - started < 1.0, name
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holder
            assert (await http.get(f"{fake_upstream.base_url}/models")).status_code == 200, name
            if isinstance(transport, AiohttpTransport):
                assert_released(transport)


async def test_a_get_is_not_resent_when_the_connection_drops():
    """aiohttp resends an idempotent request once on its own; the router decides about retries."""
    accepted = 0

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(AiohttpTransport()) as http:
            with pytest.raises(httpx2.ReadError):
                await http.get(f"http://127.0.0.1:{port}/v1/models")
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == 1


# -- through the SDK and the adapter: the same errors, kinds and details ---------------------------


def adapter(upstream: FakeUpstream, transport: str) -> OpenAIProvider:
    spec = ProviderSpec(type="openai_compatible", base_url=upstream.base_url, transport=transport)
    return OpenAIProvider("up", spec, "sk-test")


async def adapter_outcome(provider: OpenAIProvider, *, stream: bool) -> Any:
    call = Call(MODEL, USER, 0.3)
    try:
        if stream:
            return [chunk.text async for chunk in provider.stream(call)]
        return (await provider.complete(call)).text
    except ProviderError as error:
        return (error.kind, error.message, error.status, error.retry_after)


@pytest.mark.parametrize(
    ("fault", "stream", "kind"),
    [
        (Fault.reset(), False, ErrorKind.CONNECTION),
        (Fault.hang(), False, ErrorKind.TIMEOUT),
        (Fault.cut(2), True, ErrorKind.CONNECTION),
        (Fault.stall(1, 5.0), True, ErrorKind.TIMEOUT),
        (Fault.slow_first_token(5.0), True, ErrorKind.TIMEOUT),
        (Fault.rate_limited(retry_after=7), False, ErrorKind.RATE_LIMITED),
        (Fault.rate_limited(retry_after_ms=1500), True, ErrorKind.RATE_LIMITED),
        (Fault.unavailable(), False, ErrorKind.SERVER_ERROR),
        (Fault.context_length(), False, ErrorKind.CONTEXT_LENGTH),
        (Fault.html(), False, ErrorKind.SERVER_ERROR),
    ],
    ids=["reset", "hang", "cut", "stall", "slow-first-token", "429", "429-stream", "503", "context", "html"],
)
async def test_the_adapter_classifies_every_fault_as_over_the_default_transport(
    fake_upstream, fault, stream, kind
):
    fake_upstream.add_fault(MODEL, fault)
    seen = {}
    for name in TRANSPORTS:
        provider = adapter(fake_upstream, name)
        try:
            seen[name] = await adapter_outcome(provider, stream=stream)
        finally:
            await provider.aclose()
    assert seen["aiohttp"] == seen["httpx"]
    assert seen["aiohttp"][0] is kind


async def test_retry_after_reaches_the_sdk_and_the_adapter(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.rate_limited(retry_after=7))
    sdk = openai.AsyncOpenAI(
        base_url=fake_upstream.base_url, api_key="x", max_retries=0, http_client=sdk_http_client("aiohttp")
    )
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    finally:
        await sdk.close()
    assert caught.value.response.headers["retry-after"] == "7"
    provider = adapter(fake_upstream, "aiohttp")
    try:
        kind, _, status, retry_after = await adapter_outcome(provider, stream=False)
    finally:
        await provider.aclose()
    assert (kind, status, retry_after) == (ErrorKind.RATE_LIMITED, 429, 7.0)


async def test_the_sdk_raises_its_timeout_and_connection_errors_as_before(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.hang(), times=1)
    fake_upstream.add_fault(MODEL, Fault.reset(), times=1)
    for expected in (openai.APITimeoutError, openai.APIConnectionError):
        sdk = openai.AsyncOpenAI(
            base_url=fake_upstream.base_url,
            api_key="x",
            max_retries=0,
            http_client=sdk_http_client("aiohttp"),
        )
        try:
            with pytest.raises(openai.APIConnectionError) as caught:
                await sdk.chat.completions.create(model=MODEL, messages=USER, timeout=0.3)  # type: ignore[arg-type]
        finally:
            await sdk.close()
        assert type(caught.value) is expected
        assert isinstance(caught.value.__cause__, httpx2.TransportError)


# -- streaming and giving connections back ---------------------------------------------------------


async def test_a_stream_arrives_as_it_is_sent(fake_upstream):
    fake_upstream.set_reply(MODEL, "one two three four")
    fake_upstream.add_fault(MODEL, Fault.stall(2, 0.5))
    transport = AiohttpTransport()
    async with client(transport) as http:
        started = time.monotonic()
        arrivals = []
        response = await http.send(chat_request(http, fake_upstream, stream=True), stream=True)
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - started)
        await response.aclose()
        assert_released(transport)
    assert arrivals[0] < 0.4 and arrivals[-1] >= 0.5  # the first events came before the stall ended
    assert len(arrivals) >= 5


async def test_cancelling_while_waiting_for_the_answer_frees_the_connection(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.hang(), times=1)
    transport = AiohttpTransport()
    async with client(transport) as http:
        task = asyncio.create_task(http.send(chat_request(http, fake_upstream)))
        await received(fake_upstream)
        assert transport.in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_released(transport)
        assert (await http.send(chat_request(http, fake_upstream))).status_code == 200


async def test_cancelling_mid_stream_frees_the_connection(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.stall(1, 30.0))
    transport = AiohttpTransport()
    first = asyncio.Event()

    async def read(http: httpx2.AsyncClient) -> None:
        async with http.stream("POST", f"{fake_upstream.base_url}/chat/completions", json={
            "model": MODEL, "messages": USER, "stream": True,
        }) as response:  # fmt: skip
            async for _ in response.aiter_raw():
                first.set()

    async with client(transport) as http:
        task = asyncio.create_task(read(http))
        await asyncio.wait_for(first.wait(), 5)
        assert transport.in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_released(transport)


async def test_the_adapter_gives_the_connection_back_after_a_cut_and_after_a_timeout(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.cut(1), times=1)
    fake_upstream.add_fault(MODEL, Fault.stall(1, 30.0), times=1)
    provider = adapter(fake_upstream, "aiohttp")
    transport = provider._client._client._transport
    assert isinstance(transport, AiohttpTransport)
    try:
        for kind in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT):
            assert (await adapter_outcome(provider, stream=True))[0] is kind
            assert_released(transport)
        assert await adapter_outcome(provider, stream=True)
    finally:
        await provider.aclose()


async def test_a_stream_closed_before_its_end_is_not_put_back_in_the_pool(fake_upstream):
    fake_upstream.add_fault(MODEL, Fault.stall(1, 30.0), times=1)
    transport = AiohttpTransport()
    async with client(transport) as http:
        response = await http.send(chat_request(http, fake_upstream, stream=True), stream=True)
        async for _ in response.aiter_raw():
            break
        await response.aclose()
        assert_released(transport)
        # Its unread rest would garble the next answer on that connection: it must be closed.
        assert not any(connector(transport)._conns.values())
        assert (await http.send(chat_request(http, fake_upstream))).json()["choices"]


async def test_connections_are_kept_alive_and_reused(fake_upstream):
    transport = AiohttpTransport()
    async with client(transport) as http:
        for _ in range(5):
            assert (await http.send(chat_request(http, fake_upstream))).status_code == 200
        idle = connector(transport)._conns
        assert sum(len(connections) for connections in idle.values()) == 1
        assert_released(transport)


async def test_concurrent_requests_all_answer_and_all_connections_come_back(fake_upstream):
    transport = AiohttpTransport(max_connections=8)
    async with client(transport) as http:
        answers = await asyncio.gather(*(http.send(chat_request(http, fake_upstream)) for _ in range(40)))
        assert all(answer.status_code == 200 for answer in answers)
        assert_released(transport)


# -- bodies, cookies, sessions ----------------------------------------------------------------------


@pytest.fixture
async def plain_server() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A loopback server answering gzip bodies and setting a cookie; yields its URL and the cookies it got."""
    cookies: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        body = await request.read()
        payload = gzip.compress(json.dumps({"echo": body.decode() or None}).encode())
        response = web.Response(body=payload, content_type="application/json")
        response.headers["Content-Encoding"] = "gzip"
        response.set_cookie("session", "abc")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")), cookies
    finally:
        await server.close()


async def test_a_gzip_body_is_decoded_once_and_cookies_are_kept_by_httpx2(plain_server):
    url, cookies = plain_server
    async with client(AiohttpTransport()) as http:
        first = await http.get(url)
        second = await http.get(url)
    assert first.json() == second.json() == {"echo": None}
    assert first.headers["content-encoding"] == "gzip"
    assert cookies == [None, "session=abc"]  # httpx2's cookie jar, and aiohttp's none besides


async def test_a_streamed_upload_is_sent_whole(plain_server):
    url, _ = plain_server

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    async with client(AiohttpTransport()) as http:
        answer = await http.post(url, content=parts())
    assert answer.json() == {"echo": "one two three"}


def test_the_session_opens_inside_each_loop_and_aclose_closes_them(fake_upstream, caplog):
    transport = AiohttpTransport()  # built outside any loop, as a Router is
    http = client(transport)

    async def ask() -> int:
        return (await http.get(f"{fake_upstream.base_url}/models")).status_code

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(ask()) == 200
        assert asyncio.run(ask()) == 200  # a new loop: a new session; the old loop's is let go
        sessions = [pool.session for pool in transport._pools.values()]
        asyncio.run(http.aclose())
    assert sessions and all(session.closed for session in sessions)
    assert not transport._pools
    assert "Unclosed" not in caplog.text
    with pytest.raises(RuntimeError):
        asyncio.run(transport.handle_async_request(httpx2.Request("GET", f"{fake_upstream.base_url}/models")))


# -- the switch -------------------------------------------------------------------------------------


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in _PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("no_proxy_variables")
@pytest.mark.parametrize(
    "kind", ["openai", "azure_openai", "openai_compatible", "groq", "ollama", "anthropic"]
)
async def test_aiohttp_is_the_default_and_httpx_the_switch_back(kind):
    extra = {"base_url": "http://127.0.0.1:9", "api_version": "2024-10-21"} if kind == "azure_openai" else {}
    if kind == "openai_compatible":
        extra = {"base_url": "http://127.0.0.1:9/v1"}
    transports = {}
    for choice in (None, "httpx"):
        spec = ProviderSpec.model_validate(
            {"type": kind, **extra, **({"transport": choice} if choice else {})}
        )
        provider = (
            AnthropicProvider("p", spec, "k") if kind == "anthropic" else OpenAIProvider("p", spec, "k")
        )
        transports[choice] = type(provider._client._client._transport)
        await provider.aclose()
    assert transports == {None: AiohttpTransport, "httpx": httpx2.AsyncHTTPTransport}


def test_a_proxy_in_the_environment_keeps_the_default_transport(monkeypatch):
    def transport(name: Any) -> type:
        return type(sdk_http_client(name)._transport)

    for variable in _PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert transport("aiohttp") is AiohttpTransport
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # names no proxy to go through
    assert transport("aiohttp") is AiohttpTransport
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert transport("aiohttp") is httpx2.AsyncHTTPTransport
    assert transport("httpx") is httpx2.AsyncHTTPTransport


def test_the_policy_accepts_the_two_transports_only():
    base = {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    assert ProviderSpec.model_validate(base).transport == "aiohttp"
    assert ProviderSpec.model_validate({**base, "transport": "httpx"}).transport == "httpx"
    with pytest.raises(ValueError, match="transport"):
        ProviderSpec.model_validate({**base, "transport": "requests"})


@pytest.mark.usefixtures("no_proxy_variables")
async def test_the_router_closes_the_session_it_opened(fake_upstream):
    spec = {"type": "openai_compatible", "base_url": fake_upstream.base_url, "api_key": "x"}
    policy = Policy.model_validate({
        "providers": {"up": spec},
        "targets": {"t": {"provider": "up", "model": MODEL}},
        "routes": {"chat": {"targets": ["t"]}},
    })  # fmt: skip
    router = Router(policy, seed=0)
    assert (await router.complete("chat", USER)).text
    provider = router._providers["up"].built  # built by the first call
    assert isinstance(provider, OpenAIProvider)
    transport = provider._client._client._transport
    assert isinstance(transport, AiohttpTransport)
    session = connector(transport)
    await router.aclose()
    assert session.closed and not transport._pools
