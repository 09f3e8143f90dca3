"""Fixtures for the state stores: a real Redis on loopback, a namespace per test, a dedicated
`redis-server` that a test may stop and start again, and a harness that runs one contract
suite over `MemoryStore` (virtual time) and `RedisStore` (real time, short durations).

Without Redis on 127.0.0.1:6379 the Redis tests skip locally and fail when `CI` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from router.state import MemoryStore, RedisStore, StateStore
from router.testing import FakeClock


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    """A key namespace of this test's own, deleted afterwards."""
    ns = f"router-test:{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{ns}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test Redis, for looking behind a store's back."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_store(redis_url: str, namespace: str) -> AsyncIterator[Callable[..., RedisStore]]:
    """Make `RedisStore`s in this test's namespace (any URL may be passed); closed afterwards."""
    stores: list[RedisStore] = []

    def make(
        worker: str = "w1", *, url: str | None = None, ns: str | None = None, **kwargs: Any
    ) -> RedisStore:
        store = RedisStore(url or redis_url, ns or namespace, worker=worker, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


async def eventually(condition: Callable[[], bool], within: float = 2.0, step: float = 0.002) -> None:
    """Wait (really) until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(step)


async def write_unannounced_breaker(
    client: redis.asyncio.Redis, namespace: str, target: str, *, state: str, generation: int
) -> None:
    """A breaker change whose pub/sub announcement was lost: only a reconcile can find it."""
    await client.hset(
        f"{namespace}:breaker:{target}",
        mapping={
            "target": target,
            "state": state,
            "generation": generation,
            "trips": 1 if state == "open" else 0,
            "retry_at": "0",
            "holder": "",
        },
    )
    await client.sadd(f"{namespace}:breaker-targets", target)


# -- the contract harness -------------------------------------------------------------------


class Harness:
    """One store implementation under the contract suite.

    `store(worker)` gives the store a worker uses (one shared `MemoryStore`; one `RedisStore`
    per worker in a shared namespace). `elapse(s)` lets time pass: virtual for memory, real
    for Redis. `tolerance` is how far real-time readings may drift from the ideal.
    """

    kind: str
    tolerance: float

    async def store(self, worker: str = "w1") -> StateStore:
        raise NotImplementedError

    async def elapse(self, seconds: float) -> None:
        raise NotImplementedError

    async def settle(self, condition: Callable[[], bool]) -> None:
        """Wait until a callback-visible condition holds (delivery is async on Redis)."""
        await eventually(condition, within=1.0)


class MemoryHarness(Harness):
    kind = "memory"
    tolerance = 1e-9

    def __init__(self) -> None:
        self.clock = FakeClock(auto_advance=False)
        self._store = MemoryStore(self.clock)

    async def store(self, worker: str = "w1") -> StateStore:
        return self._store

    async def elapse(self, seconds: float) -> None:
        self.clock.advance(seconds)


class RedisHarness(Harness):
    kind = "redis"
    tolerance = 0.06

    def __init__(self, make: Callable[..., RedisStore]) -> None:
        self._make = make
        self._stores: dict[str, RedisStore] = {}

    async def store(self, worker: str = "w1") -> StateStore:
        if worker not in self._stores:
            self._stores[worker] = self._make(worker)
        return self._stores[worker]

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return MemoryHarness()
    return RedisHarness(request.getfixturevalue("redis_store"))


# -- a Redis of our own, to stop and start ---------------------------------------------------


class FreezingProxy:
    """A loopback TCP proxy to Redis whose `freeze()` silences the connections open at the time
    (or only those that subscribed).

    Frozen connections stay open and swallow bytes both ways, as behind a NAT that forgot
    them; connections made later pass normally.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._frozen: set[asyncio.StreamWriter] = set()
        self._open: set[asyncio.StreamWriter] = set()
        self._subscribers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    def freeze(self, *, subscriptions_only: bool = False) -> None:
        self._frozen |= self._subscribers if subscriptions_only else self._open

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._open |= {writer, up_writer}

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, owner: asyncio.StreamWriter
        ) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if dst is not owner and b"SUBSCRIBE" in data:
                        self._subscribers.add(owner)
                    if owner not in self._frozen:
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, writer), pipe(up_reader, writer, writer))
        self._open -= {writer, up_writer}
        self._subscribers.discard(writer)
