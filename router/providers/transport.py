"""An httpx2 transport on aiohttp, and the httpx2 client the SDK-based adapters hand their SDK.

The openai and anthropic SDKs build, authenticate and parse every request through httpx2; the
transport underneath only moves bytes. httpx2's own transport (httpcore) costs about 0.3 ms of
CPU per request more than aiohttp (see benchmarks/throughput.py), which caps the calls per
second a process can make at high concurrency. `AiohttpTransport` keeps httpx2 and the SDK on
top and moves the bytes with aiohttp, raising the httpx2 exceptions the default transport
raises for the same events, so the SDK and our adapters classify every failure as before
(timeouts -> `APITimeoutError`, connection problems -> `APIConnectionError`, a stream cut
mid-body -> an `httpx2.TransportError`).

The openai SDK ships a similar client (`openai.DefaultAioHttpClient`, a vendored copy of
httpx-aiohttp 0.2.0), but its error map turns every aiohttp connection error into
`ConnectTimeout`: a refused connection or a TCP reset would become a timeout. Hence this one.

Differences from the default transport, all deliberate: HTTP/1.1 only (as the SDKs' default);
no write timeout (aiohttp has none; request bodies here are small); an aiohttp session per
event loop, opened by the first request on that loop; no proxies (`sdk_http_client` keeps the
default transport when the environment names one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ssl
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import aiohttp
import httpx2
from aiohttp import client_exceptions as aio_errors
from yarl import URL

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "AiohttpTransport",
    "ResponseTooLarge",
    "TransportName",
    "sdk_http_client",
]

TransportName = Literal["aiohttp", "httpx"]

DEFAULT_MAX_CONNECTIONS = 1000
"""Connections per transport, as the SDKs' default pool; more requests than this wait for one."""

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The most bytes one answer may hold, decompressed, streams included (a policy may say otherwise)."""

# Only encodings that can be inflated a piece at a time, and so stopped at the bound, are asked for.
_ACCEPT_ENCODING = "gzip, deflate"
_PIECE = 64 * 1024  # the most one inflating step makes: memory and time per step stay small

_KEEPALIVE_EXPIRY = 5.0  # httpx2's default: an idle connection is dropped after this long
_PROXY_SCHEMES = {"http", "https", "all"}  # the *_PROXY variables httpx2 honours (NO_PROXY alone is none)

# aiohttp exception -> the httpx2 exception httpcore raises for the same event. Looked up along the
# raised exception's MRO, so the most specific aiohttp class decides (ClientConnectorError is a
# ClientOSError, which is a ClientConnectionError, ...).
_ERRORS: dict[type[BaseException], type[httpx2.TransportError]] = {
    aio_errors.ConnectionTimeoutError: httpx2.ConnectTimeout,  # sock_connect
    aio_errors.ServerTimeoutError: httpx2.ReadTimeout,  # sock_read: nothing read for that long
    aio_errors.ClientConnectorError: httpx2.ConnectError,  # refused, DNS, TLS handshake
    aio_errors.ServerDisconnectedError: httpx2.RemoteProtocolError,  # closed before the answer
    aio_errors.ClientConnectionResetError: httpx2.WriteError,  # the request could not be sent
    aio_errors.ClientOSError: httpx2.ReadError,  # ECONNRESET and friends
    aio_errors.ClientPayloadError: httpx2.RemoteProtocolError,  # the body ended early or is garbled
    aio_errors.ClientResponseError: httpx2.RemoteProtocolError,  # not a valid HTTP answer
    aio_errors.NonHttpUrlClientError: httpx2.UnsupportedProtocol,
    aio_errors.InvalidUrlClientError: httpx2.UnsupportedProtocol,
    aio_errors.ClientConnectionError: httpx2.ReadError,
    aio_errors.ClientError: httpx2.TransportError,
}


def _translate(error: aiohttp.ClientError) -> httpx2.TransportError:
    mapped = next(_ERRORS[cls] for cls in type(error).__mro__ if cls in _ERRORS)
    if isinstance(error, aio_errors.ClientPayloadError) and isinstance(error.__cause__, OSError):
        mapped = httpx2.ReadError  # a reset mid-body is a read error, as httpcore says
    return mapped(str(error) or type(error).__name__)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """The trust store the SDKs' default client uses (httpx2's, honouring SSL_CERT_FILE/DIR); built once."""
    return httpx2.create_ssl_context()


class _Pool:
    """One event loop's share of a transport: an aiohttp session and the permits for its connections."""

    __slots__ = ("in_use", "loop", "permits", "session")

    def __init__(self, session: aiohttp.ClientSession, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.permits = asyncio.Semaphore(size)
        self.in_use = 0
        self.loop = loop

    async def take(self, wait: float | None) -> Callable[[], None]:
        """Take a connection's permit, waiting at most `wait` seconds (None: no limit) for one to
        come free; returns the function that gives it back."""
        permits = self.permits
        if permits.locked():
            try:
                async with asyncio.timeout(wait):
                    await permits.acquire()
            except TimeoutError:
                raise httpx2.PoolTimeout("no connection came free before the pool timeout") from None
        else:
            await permits.acquire()  # free: returns at once
        self.in_use += 1

        def done() -> None:
            self.in_use -= 1
            permits.release()

        return done


async def _send(
    session: aiohttp.ClientSession, request: httpx2.Request, timeouts: Mapping[str, Any]
) -> aiohttp.ClientResponse:
    """`request` sent on `session`, as aiohttp expects it; the response once its head has come."""
    try:
        body: Any = request.content or None
    except httpx2.RequestNotRead:
        body = request.stream  # an upload read as it is sent: aiohttp chooses the framing
        request.headers.pop("transfer-encoding", None)
    url = URL(str(request.url), encoded=True)  # httpx2 has already percent-encoded it
    if url.user is not None:
        # httpx2 has made it the Authorization header, as its own transport sends it; aiohttp
        # refuses a URL with credentials beside that header.
        url = url.with_user(None)
    return await session.request(
        request.method,
        url,
        headers=request.headers.multi_items(),
        data=body,
        allow_redirects=False,  # httpx2 follows redirects itself, when asked to
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        ),
        server_hostname=request.extensions.get("sni_hostname"),
    )


class _Body(httpx2.AsyncByteStream):
    """A response body read from aiohttp as it arrives; closing it returns or drops the connection."""

    __slots__ = ("_done", "_response")

    def __init__(self, response: aiohttp.ClientResponse, done: Callable[[], None]) -> None:
        self._response = response
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as error:
            raise _translate(error) from error

    async def aclose(self) -> None:
        # Nothing awaited: a cancelled caller cannot leave the connection checked out. A body
        # read to the end puts the connection back in the pool; an unfinished one closes it.
        done, self._done = self._done, None
        if done is not None:
            self._response.release()
            done()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """httpx2 requests sent with aiohttp: HTTP/1.1, keep-alive, at most `max_connections` at once.

    Timeouts come from each request's `extensions["timeout"]` as httpx2 sets them: `pool` bounds
    the wait for a free connection (`PoolTimeout`), `connect` the TCP/TLS connect
    (`ConnectTimeout`), `read` each wait for bytes of the answer (`ReadTimeout`). The session
    is opened inside the running loop by the first request, so the transport may be built
    outside any loop; `aclose()` closes it.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = _KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context if ssl_context is not None else _default_ssl_context()
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        self._closing: set[concurrent.futures.Future[None]] = set()
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections held right now: by requests in flight and by responses not yet closed."""
        return sum(pool.in_use for pool in self._pools.values())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        pool = self._pools.get(asyncio.get_running_loop()) or await self._open()
        timeout = request.extensions.get("timeout") or {}
        done = await pool.take(timeout.get("pool"))
        try:
            response = await _send(pool.session, request, timeout)
        except aiohttp.ClientError as error:
            done()
            raise _translate(error) from error
        except BaseException:
            done()
            raise
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, done),
            request=request,
            extensions=extensions,
        )

    async def _open(self) -> _Pool:
        if self._closed:
            raise RuntimeError("the transport is closed")
        loop = asyncio.get_running_loop()
        pool = self._pools[loop] = _Pool(self._session(), self._max_connections, loop)
        for stale in [other for other in self._pools.values() if other.loop.is_closed()]:
            del self._pools[stale.loop]
            await stale.session.close()  # its loop is gone, so is every socket: only marks it closed
        return pool

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_expiry, ssl=self._ssl
        )
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx2 decodes Content-Encoding, as over its own transport
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx2 keeps the cookies
            trust_env=False,  # no proxies or .netrc behind the SDK's back
        )
        # aiohttp resends a GET once when the connection drops before the answer; the router
        # decides about retries (and health probes must see the failure), so it must not.
        session._retry_connection = False
        return session

    async def aclose(self) -> None:
        """Close every session: this loop's now; one on another running loop, on that loop."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        running = asyncio.get_running_loop()
        for pool in pools:
            if pool.loop is running or pool.loop.is_closed():
                await pool.session.close()
            elif pool.loop.is_running():
                future = asyncio.run_coroutine_threadsafe(pool.session.close(), pool.loop)
                self._closing.add(future)  # not awaited: that loop's thread may be waiting on us
                future.add_done_callback(self._closing.discard)


def sdk_http_client(
    transport: TransportName, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
) -> httpx2.AsyncClient:
    """The httpx2 client for an SDK (`http_client=`), whose answers are bounded by `max_response_bytes`.

    "aiohttp" gives a client on `AiohttpTransport` with the SDKs' defaults (redirects followed;
    the SDK passes its timeouts with every request). "httpx", or a proxy in the environment
    (HTTP(S)_PROXY, ALL_PROXY), gives httpx2's own transport, with the SDKs' pool size: it honours
    proxies, `AiohttpTransport` does not. Either way every answer's body is read through
    `ResponseTooLarge`'s bound, decompressed here a piece at a time (see `bound_responses`).
    """
    hooks = bound_responses(max_response_bytes)
    if transport == "httpx" or _PROXY_SCHEMES & urllib.request.getproxies().keys():
        limits = httpx2.Limits(max_connections=DEFAULT_MAX_CONNECTIONS, max_keepalive_connections=100)
        return httpx2.AsyncClient(follow_redirects=True, limits=limits, event_hooks=hooks)
    return httpx2.AsyncClient(transport=AiohttpTransport(), follow_redirects=True, event_hooks=hooks)


class ResponseTooLarge(httpx2.RemoteProtocolError):
    """An answer that passed its provider's `max_response_bytes`, counted decompressed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer passed max_response_bytes ({limit:,} bytes, decompressed)")
        self.limit = limit


def bound_responses(limit: int) -> dict[str, list[Any]]:
    """httpx2 event hooks that bound every answer's body to `limit` bytes, decompressed.

    The request asks only for encodings that can be inflated a piece at a time; the answer's body
    is inflated here (httpx2 then sees it unencoded), never more than `_PIECE` bytes in one step,
    and reading it raises `ResponseTooLarge` once `limit` bytes have come: a gzip bomb costs at
    most `limit` bytes of memory and a few milliseconds, an endless stream ends there.
    """

    async def on_request(request: httpx2.Request) -> None:
        request.headers["Accept-Encoding"] = _ACCEPT_ENCODING

    async def on_response(response: httpx2.Response) -> None:
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise httpx2.RemoteProtocolError(
                f"an answer in content-encoding {encoding!r}, which was not asked for"
            )
        response.stream = _BoundedBody(response.stream, limit, encoding)
        for header in ("content-encoding", "content-length"):
            response.headers.pop(header, None)

    return {"request": [on_request], "response": [on_response]}


class _BoundedBody(httpx2.AsyncByteStream):
    __slots__ = ("_encoding", "_inner", "_limit")

    def __init__(self, inner: Any, limit: int, encoding: str) -> None:
        self._inner, self._limit, self._encoding = inner, limit, encoding

    async def __aiter__(self) -> AsyncIterator[bytes]:
        inflate = _Inflater(self._encoding) if self._encoding not in ("", "identity") else None
        total = 0
        async for data in self._inner:
            pieces: Iterable[bytes] = inflate.feed(data) if inflate is not None else (data,)
            for piece in pieces:
                total += len(piece)
                if total > self._limit:
                    raise ResponseTooLarge(self._limit)
                yield piece

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Inflater:
    """gzip or deflate, inflated `_PIECE` bytes at a time (whatever one compressed chunk stands for)."""

    __slots__ = ("_raw", "_zlib")

    def __init__(self, encoding: str) -> None:
        # deflate is zlib-wrapped by the RFC, raw in practice too (as httpx2, try both).
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if "gzip" in encoding else zlib.MAX_WBITS)
        self._raw = encoding == "deflate"

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated pieces of `data`, one step at a time: the reader may stop after any of them."""
        while data:
            try:
                piece = self._zlib.decompress(data, _PIECE)
            except zlib.error as error:
                if not self._raw:
                    raise httpx2.RemoteProtocolError(f"the compressed answer is damaged ({error})") from None
                self._zlib, self._raw = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._raw = False  # the first bytes decided the format
            if piece:
                yield piece
            if self._zlib.eof:
                return  # what follows the end (another gzip member) is ignored, as httpx2 does
            data = self._zlib.unconsumed_tail
