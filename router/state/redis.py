"""The fleet-wide `StateStore` on Redis: Lua scripts on Redis's clock, pub/sub plus reconcile.

Key layout (every key under `<namespace>:`; pass a namespace like `{router}` to keep them in
one Redis Cluster slot):

    <ns>:breaker:<target>          hash    target, state, generation, trips, retry_at (Redis ms),
                                           holder; never expires: generations must only grow
    <ns>:breaker-targets           set     targets with a breaker hash
    <ns>:epoch                     string  this store's lifetime (Redis TIME when first used): a
                                           Redis restarted empty starts a new one, and workers
                                           know its generations start over
    <ns>:window:<target>           hash    c<slice> calls, f<slice> failures, row; PX window
    <ns>:failing-workers:<target>  hash    worker -> Redis ms of its last failure; PX window
    <ns>:lease:<name>              string  owner; PX ttl
    <ns>:health:<target>           hash    target, healthy, streak, since, checked (Redis ms),
                                           detail; PX ttl
    <ns>:health-targets            set     targets that may have a health hash (pruned on read)
    <ns>:drained                   set     drained targets
    <ns>:bucket:<bucket>           hash    level, stamp (Redis ms); PX until it would be full
    <ns>:holders:<bucket>          zset    worker -> Redis ms until which it counts as live (its lease)
    <ns>:held:<bucket>             hash    worker -> what it holds after its last lease
    <ns>:breakers                  channel breaker records as JSON, from every transition, and
                                           {"target", "drained"} from every drain and restore

The state path is built to fail fast: short connect and socket timeouts, no retries, an
overall deadline per call; every failure becomes `StoreUnavailable` and the caller carries on
with local state. The listener keeps its own connection and reconnect loop.

Deadlines bound waits on real sockets, so they run on the event loop's time; the injected
`Clock` schedules the reconcile interval and the listener's reconnect backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.clock import Clock, SystemClock
from router.logs import hide, url_secrets
from router.resilience.breaker import BreakerState
from router.resilience.window import TripRule
from router.state.base import (
    BreakerRecord,
    Change,
    DrainRecord,
    Grant,
    HealthRecord,
    Snapshot,
    StateStore,
    StoreUnavailable,
)
from router.state.outages import SETTLE, Outages

__all__ = ["RedisStore"]

log = logging.getLogger("router")

T = TypeVar("T")

_SCRIPTS = (
    "report",
    "transition",
    "snapshot",
    "take_lease",
    "record_probe",
    "health",
    "adjust",
    "lease",
)
# Listener reconnect backoff: a doubling delay, jittered between half and all of it.
_MAX_CONNECTIONS = 16  # per worker; enough for bursts of failure reports, cheap for Redis
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 2.0
# Errors that mean "Redis did not answer" rather than "Redis refused".
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _load_script(name: str) -> str:
    return (resources.files("router.state") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _redacted(url: str) -> tuple[str, tuple[str, ...]]:
    """`url` without credentials, for messages; and the secrets that must never appear in one."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}", url_secrets(url)
    except ValueError:
        return "redis", ()


def _client_options(socket_timeout: float, worker: str) -> dict[str, Any]:
    """The options of both Redis clients (the pool's and the listener's) of `worker`."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        "decode_responses": True,
        "driver_info": None,  # no CLIENT SETINFO round trips on connect
        # RESP2: under RESP3 redis-py 8 enables maintenance notifications, which skips the
        # pool's check for connections the server closed, so the first command after a
        # Redis restart would fail on a dead pooled connection.
        "protocol": 2,
        # CLIENT SETNAME refuses spaces and control characters.
        "client_name": "".join(c if "!" <= c <= "~" else "_" for c in f"router:{worker}"),
    }


class RedisStore:
    """Breakers, health, drains and token buckets for a fleet of workers sharing one Redis."""

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        worker: str,
        socket_timeout: float = 0.25,
        reconcile_interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.namespace = namespace
        self.worker = worker
        self._clock: Clock = clock or SystemClock()
        self._socket_timeout = socket_timeout
        self._deadline = 2 * socket_timeout
        self._reconcile_interval = reconcile_interval
        self._where, self._secrets = _redacted(url)
        self._prefix = f"{namespace}:"
        self._channel = f"{namespace}:breakers"
        options = _client_options(socket_timeout, worker)
        try:
            # A bounded pool: a burst of failures waits for a connection instead of opening one each.
            pool = BlockingConnectionPool.from_url(
                url, max_connections=_MAX_CONNECTIONS, timeout=socket_timeout, **options
            )
            self._redis: Redis = Redis(connection_pool=pool)
            self._listener_redis: Redis = Redis.from_url(url, **options)
        except ValueError:
            raise ValueError(f"not a Redis URL: {self._where}") from None
        self._scripts: dict[str, AsyncScript] = {
            name: self._redis.register_script(_load_script(name)) for name in _SCRIPTS
        }
        self._callbacks: list[Callable[[Change], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._reachable: bool | None = None
        self._refusals_logged: set[str] = set()
        self._outages = Outages(self._clock)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, namespace={self.namespace!r}, worker={self.worker!r})"

    @property
    def reachable(self) -> bool | None:
        """Whether the last exchange with Redis worked (None before the first)."""
        return self._reachable

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, on_change: Callable[[Change], None]) -> None:
        """Subscribe (in the background) and reconcile; waits briefly for the first attempt."""
        self._callbacks.append(on_change)
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name=f"router-state-listener:{self.namespace}:{self.worker}"
            )
        else:
            with contextlib.suppress(StoreUnavailable):
                self._deliver_to(on_change, await self.snapshot())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * self._deadline):
                await self._first_attempt.wait()

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # A cancellation that lands as redis-py's read times out can be taken for the
            # timeout and swallowed: cancel until the listener is gone.
            while not listener.done():
                listener.cancel()
                await asyncio.wait({listener}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._callbacks.clear()
        await self._listener_redis.aclose()
        await self._redis.aclose()

    # -- breakers ---------------------------------------------------------------------------

    async def report(
        self, target: str, worker: str, *, successes: int, failures: int, rule: TripRule
    ) -> BreakerRecord | None:
        p = self._prefix
        raw = await self._script(
            "report",
            keys=[
                f"{p}window:{target}",
                f"{p}breaker:{target}",
                f"{p}breaker-targets",
                f"{p}failing-workers:{target}",
                f"{p}epoch",
            ],
            args=[
                target,
                worker,
                successes,
                failures,
                rule.window * 1000,
                rule.consecutive,
                repr(float(rule.failure_rate)),
                rule.min_calls,
                rule.min_workers,
                rule.reset_timeout * 1000,
                rule.max_reset_timeout * 1000,
                self._channel,
            ],
        )
        return None if raw is None else _breaker_record(json.loads(raw))

    async def transition(
        self,
        target: str,
        *,
        expect_generation: int,
        state: BreakerState,
        holder: str = "",
        reset_timeout: float = 0.0,
        max_reset_timeout: float = 0.0,
    ) -> BreakerRecord | None:
        state = BreakerState(state)  # refuses a string that is no state
        p = self._prefix
        raw = await self._script(
            "transition",
            keys=[
                f"{p}breaker:{target}",
                f"{p}breaker-targets",
                f"{p}window:{target}",
                f"{p}failing-workers:{target}",
                f"{p}epoch",
            ],
            args=[
                target,
                expect_generation,
                state,
                holder,
                reset_timeout * 1000,
                max_reset_timeout * 1000,
                self._channel,
            ],
        )
        return None if raw is None else _breaker_record(json.loads(raw))

    async def snapshot(self) -> Snapshot:
        p = self._prefix
        raw = await self._script(
            "snapshot", keys=[f"{p}breaker-targets", f"{p}epoch", f"{p}drained"], args=[f"{p}breaker:"]
        )
        data = json.loads(raw)
        records = (_breaker_record(item) for item in _json_list(data["breakers"]))
        return Snapshot(
            str(data["epoch"]),
            {r.target: r for r in records},
            frozenset(map(str, _json_list(data["drained"]))),
        )

    async def take_lease(self, name: str, owner: str, ttl: float) -> bool:
        held = await self._script("take_lease", keys=[f"{self._prefix}lease:{name}"], args=[owner, _ms(ttl)])
        return bool(held)

    # -- health and drains ------------------------------------------------------------------

    async def record_probe(self, target: str, healthy: bool, detail: str, ttl: float) -> HealthRecord:
        p = self._prefix
        raw = await self._script(
            "record_probe",
            keys=[f"{p}health:{target}", f"{p}health-targets"],
            args=[target, "1" if healthy else "0", detail, _ms(ttl)],
        )
        return _health_record(json.loads(raw))

    async def health(self) -> dict[str, HealthRecord]:
        raw = await self._script(
            "health", keys=[f"{self._prefix}health-targets"], args=[f"{self._prefix}health:"]
        )
        records = (_health_record(item) for item in _json_list(json.loads(raw)))
        return {r.target: r for r in records}

    async def set_drained(self, target: str, drained: bool) -> None:
        key = f"{self._prefix}drained"
        announcement = json.dumps({"target": target, "drained": drained})

        async def change() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                (pipe.sadd if drained else pipe.srem)(key, target)
                pipe.publish(self._channel, announcement)
                await pipe.execute()

        await self._call(change)

    async def drained(self) -> set[str]:
        members = await self._call(lambda: self._redis.smembers(f"{self._prefix}drained"))
        return {str(m) for m in members}

    # -- cluster-wide limits ----------------------------------------------------------------

    async def adjust(self, bucket: str, delta: float, capacity: float, per_second: float) -> None:
        await self._script(
            "adjust",
            keys=[f"{self._prefix}bucket:{bucket}"],
            args=[repr(float(delta)), repr(float(capacity)), repr(float(per_second))],
        )

    async def lease(
        self,
        bucket: str,
        amount: float,
        capacity: float,
        per_second: float,
        worker: str,
        *,
        holding: float = 0.0,
        ttl: float = 10.0,
    ) -> Grant:
        p = self._prefix
        raw = await self._script(
            "lease",
            keys=[f"{p}bucket:{bucket}", f"{p}holders:{bucket}", f"{p}held:{bucket}"],
            args=[
                repr(float(amount)),
                repr(float(capacity)),
                repr(float(per_second)),
                worker,
                repr(float(holding)),
                repr(float(ttl)),
            ],
        )
        granted, workers, outstanding, level = raw
        return Grant(float(granted), int(workers), float(outstanding), float(level))

    # -- the state path ---------------------------------------------------------------------

    async def _script(self, name: str, *, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        return await self._call(lambda: script(keys=keys, args=args))

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one command within the deadline; any failure becomes `StoreUnavailable`."""
        try:
            async with asyncio.timeout(self._deadline):
                result = await command()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise StoreUnavailable(f"redis at {self._where}: {self._describe(exc)}") from None
        self._answered()
        return result

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
            text = f"no answer within {self._deadline:g}s"
        return hide(text, self._secrets)

    def _answered(self) -> None:
        if self._reachable is False and self._outages.back():
            log.info(
                "redis back: %s (namespace %s, worker %s); failures within %gs count as this outage",
                self._where,
                self.namespace,
                self.worker,
                SETTLE,
            )
        self._reachable = True
        self._refusals_logged.clear()

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, _UNREACHABLE):
            if self._reachable is not False and self._outages.lost():
                log.warning(
                    "redis unreachable: %s (namespace %s, worker %s): %s; carrying on with local state",
                    self._where,
                    self.namespace,
                    self.worker,
                    self._describe(exc),
                )
            self._reachable = False
        elif isinstance(exc, ResponseError):
            # Redis answered but refused (OOM, READONLY, NOPERM, a script error): log each
            # kind of refusal once until a command succeeds again.
            reason = self._describe(exc)
            if reason not in self._refusals_logged:
                self._refusals_logged.add(reason)
                log.error(
                    "redis refused a command: %s (namespace %s, worker %s): %s",
                    self._where,
                    self.namespace,
                    self.worker,
                    reason,
                )

    # -- the listener -----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Subscribe, reconcile, deliver; on any failure start over after a capped backoff."""
        backoff = _BACKOFF_MIN
        while True:
            pubsub = self._listener_redis.pubsub()
            try:
                await self._subscribe(pubsub)
                self._answered()
                await self._reconcile()
                backoff = _BACKOFF_MIN
                self._first_attempt.set()
                await self._pump(pubsub)
            except StoreUnavailable:
                pass  # logged by the state path
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
            except Exception:
                log.exception("breaker listener failed; restarting it")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            self._first_attempt.set()
            await self._clock.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """SUBSCRIBE and wait for Redis to confirm it, so a reconcile after it misses nothing."""
        async with asyncio.timeout(self._deadline):
            await pubsub.subscribe(self._channel)
            while True:
                message = await pubsub.get_message(timeout=self._socket_timeout)
                if message is not None and message["type"] == "subscribe":
                    return

    async def _pump(self, pubsub: PubSub) -> None:
        """Deliver messages; reconcile and check the subscription is alive every interval.

        A subscription can die silently (a NAT or proxy dropping an idle connection), so each
        interval also PINGs it and gives up on it when no PONG comes back.
        """
        clock = self._clock
        next_reconcile = clock.monotonic() + self._reconcile_interval
        pong_due: float | None = None
        while True:
            now = clock.monotonic()
            if pong_due is not None and now >= pong_due:
                raise RedisConnectionError("the subscription stopped answering PING")
            if now >= next_reconcile:
                if pong_due is None:
                    await pubsub.ping()
                    pong_due = now + 2 * self._deadline
                await self._reconcile()
                next_reconcile = now + self._reconcile_interval
            wake = next_reconcile if pong_due is None else min(next_reconcile, pong_due)
            message = await pubsub.get_message(timeout=max(0.0, wake - now))
            if message is None:
                continue
            if message["type"] == "pong":
                pong_due = None
            elif message["type"] == "message":
                self._deliver_raw(message["data"])

    async def _reconcile(self) -> None:
        self._deliver(await self.snapshot())

    def _deliver_raw(self, data: Any) -> None:
        try:
            decoded = json.loads(data)
            change: BreakerRecord | DrainRecord = (
                DrainRecord(str(decoded["target"]), bool(decoded["drained"]))
                if "drained" in decoded
                else _breaker_record(decoded)
            )
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("ignoring a malformed message on %s: %s", self._channel, exc)
            return
        self._deliver(change)

    def _deliver(self, change: Change) -> None:
        for callback in list(self._callbacks):
            self._deliver_to(callback, change)

    @staticmethod
    def _deliver_to(callback: Callable[[Change], None], change: Change) -> None:
        try:
            callback(change)
        except Exception:
            log.exception("state callback failed on %s", change)


def _json_list(data: Any) -> list[Any]:
    # cjson encodes an empty Lua table as an object.
    return data if isinstance(data, list) else []


def _breaker_record(data: dict[str, Any]) -> BreakerRecord:
    return BreakerRecord(
        target=str(data["target"]),
        state=BreakerState(data["state"]),
        generation=int(data["generation"]),
        retry_in=float(data.get("retry_in", 0.0)),
        trips=int(data.get("trips", 0)),
        holder=str(data.get("holder", "")),
        epoch=str(data.get("epoch", "")),
    )


def _health_record(data: dict[str, Any]) -> HealthRecord:
    return HealthRecord(
        target=str(data["target"]),
        healthy=bool(data["healthy"]),
        streak=int(data["streak"]),
        since=float(data["since"]),
        checked_ago=float(data["checked_ago"]),
        detail=str(data.get("detail", "")),
    )


if TYPE_CHECKING:

    def _implements_the_protocol(store: RedisStore) -> StateStore:
        return store
