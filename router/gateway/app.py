"""The gateway's HTTP application: one `Gateway` per worker process, over one `Router`.

Every answer goes the same way for both wires: the key (`keys.py`), the body read within its
bounds, the wire's reading of it (`openai_wire.py`, `anthropic_wire.py`), the per-request control
(the body's `router` object merged with `x-router-*` headers, `router.control.Control`), the key's
rpm and budget, then `Router.complete()` or `Router.stream()`. The answering target, the calls
made and the cost go in `x-router-target`, `x-router-attempts` and `x-router-cost-usd`; an error's
kind in `x-router-error-kind`; the whole trail in the body's `router` field when the request asks
(`"router": {"trail": true}` or `x-router-trail: true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import web

from router._router import Router
from router.control import Control
from router.errors import InvalidRequest
from router.gateway import admin
from router.gateway.anthropic_wire import ANTHROPIC
from router.gateway.failures import Failure, Refusal, failure_of
from router.gateway.keys import Caller, Keys, Spend
from router.gateway.openai_wire import OPENAI
from router.gateway.wire import Item, Wire, WireCall
from router.policy.model import GatewaySpec
from router.results import SKIPS, Completion

__all__ = ["Gateway"]

logger = logging.getLogger("router")  # its filter blanks out secrets (router.logs)

_HEADER_PREFIX = "x-router-"
_TRUE = frozenset({"1", "true", "yes", "on"})
_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_BUG = Failure(500, "internal_error", "the gateway failed on this request; its log says why")


class Gateway:
    """Serves a router over HTTP: `Gateway(router).app()` is the aiohttp application.

    `metrics` is the Prometheus registry `/metrics` shows (the router's `on_event` must feed it,
    see `router.metrics.PrometheusMetrics`); None answers `/metrics` with 404. `reload_others`: tells
    the other workers of a fleet to reload after `POST /admin/reload` reloaded this one.
    """

    def __init__(
        self, router: Router, *, metrics: Any = None, reload_others: Callable[[], None] | None = None
    ) -> None:
        self.router = router
        self.metrics = metrics
        self.reload_others = reload_others
        self.draining = False
        self._keys = Keys(router.policy.gateway, router._quotas)  # the router's leases: one per worker
        self._spec = self.spec  # with the keys, of the policy in service
        self._keys_version = router.version

    @property
    def spec(self) -> GatewaySpec:
        """The policy's `gateway` section (its defaults when it has none)."""
        return self.router.policy.gateway or GatewaySpec()

    @property
    def keys(self) -> Keys:
        """The key table of the policy in service (rebuilt after a reload)."""
        if self._keys_version != self.router.version:
            self._keys = Keys(self.router.policy.gateway, self.router._quotas)
            self._spec = self.spec
            self._keys_version = self.router.version
        return self._keys

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.spec.max_body)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat_completions),
                web.post("/v1/messages", self.messages),
                web.get("/v1/models", self.models),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.prometheus),
            ]
        )
        admin.add_routes(app, self)
        return app

    # -- the wires --------------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, OPENAI)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, ANTHROPIC)

    async def _answer(self, request: web.Request, wire: Wire) -> web.StreamResponse:
        keys = self.keys
        try:
            caller = keys.caller(request.headers)
            call = wire.parse(await self._body(request))
            keywords, trail = self._control(request, call, caller)
            spend = await keys.admit(caller)
        except Refusal as refusal:
            return _error(wire, refusal.failure)
        cost = 0.0
        try:
            arguments = {**call.arguments, **keywords}
            if call.stream:
                return await self._stream(request, wire, call, arguments, trail, keys, caller, spend)
            completion = await self.router.complete(call.route, call.messages, **arguments)
            cost = completion.cost_usd
        except Exception as error:
            return _failed(wire, error)
        finally:
            if not call.stream:
                keys.spent(caller, spend, cost)
        body = wire.answer(completion, call, self._trail(completion) if trail else None)
        return web.json_response(body, headers=_answer_headers(completion, call), dumps=_dumps)

    async def _stream(
        self,
        request: web.Request,
        wire: Wire,
        call: WireCall,
        arguments: dict[str, Any],
        trail: bool,
        keys: Keys,
        caller: Caller,
        spend: Spend,
    ) -> web.StreamResponse:
        watched = _Watched(self.router.stream(call.route, call.messages, **arguments))
        try:
            async with contextlib.aclosing(watched):
                # Until the first delta nothing is sent: a request that fails before it is an HTTP error.
                first = await anext(watched)
                headers = dict(_STREAM_HEADERS)
                if call.ignored:
                    headers["x-router-ignored"] = ",".join(call.ignored)
                response = web.StreamResponse(headers=headers)
                await response.prepare(request)
                with contextlib.suppress(ConnectionError):  # the client left: the stream is closed below
                    await wire.stream(response, watched.after(first), call, self._trail if trail else None)
                    await response.write_eof()
                return response
        finally:
            completion = watched.completion
            keys.spent(caller, spend, completion.cost_usd if completion is not None else 0.0)

    def _trail(self, completion: Completion) -> dict[str, Any]:
        """Who answered (and on which worker), what it cost, and every attempt on the way."""
        return {
            "target": completion.target,
            "provider": completion.provider,
            "model": completion.model,
            "cost_usd": completion.cost_usd,
            "latency_s": completion.latency_s,
            "worker": self.router.worker,
            "warnings": list(completion.warnings),
            "attempts": [
                {
                    "target": a.target,
                    "provider": a.provider,
                    "model": a.model,
                    "outcome": str(a.outcome),
                    "latency_s": a.latency_s,
                    "error": a.error,
                    "status": a.status,
                }
                for a in completion.attempts
            ],
        }

    async def _body(self, request: web.Request) -> Any:
        """The request's JSON, read within the body bounds: 413 too large, 408 too slow, 400 not JSON."""
        try:
            if request.content.is_eof():  # all of it came with the headers (most bodies): no timer needed
                raw = await request.read()
            else:
                async with asyncio.timeout(self._spec.read_timeout):
                    raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refusal(413, "too_large", f"the body is larger than {self._spec.max_body} bytes") from None
        except TimeoutError:
            raise Refusal(408, "too_slow", "the body did not arrive in time") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise Refusal(400, "invalid_json", "the body is not valid JSON") from None

    def _control(self, request: web.Request, call: WireCall, caller: Caller) -> tuple[dict[str, Any], bool]:
        """The call's per-request control as keywords of `Router.complete()`, and whether the trail is wanted;
        403 for a route or a control the key may not use, 400 for a bad value."""
        fields = dict(call.control)
        for name, value in request.headers.items():
            if name.lower().startswith(_HEADER_PREFIX):
                fields[name[len(_HEADER_PREFIX) :].lower()] = value
        trail = fields.pop("trail", False)
        try:
            control = Control.parse(fields)
        except InvalidRequest as error:
            raise Refusal(400, "invalid_request", str(error)) from None
        if not caller.may_name(call.route, self.router.policy.aliases):
            raise Refusal(403, "forbidden", f"this key may not use {call.route!r}")
        refused = caller.refused_controls({**fields, **({"trail": trail} if trail else {})})
        if refused:
            raise Refusal(403, "forbidden", f"this key may not set {', '.join(refused)}")
        return control.keywords(), trail is True or str(trail).strip().lower() in _TRUE

    # -- the rest ---------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        """The names a request may give as `model` (routes, aliases, `provider:model`) that its key may."""
        try:
            caller = self.keys.caller(request.headers)
        except Refusal as refusal:
            return _error(OPENAI, refusal.failure)
        aliases = self.router.policy.aliases
        data = [
            {"id": m.id, "object": "model", "owned_by": "router", "kind": m.kind, "targets": list(m.targets)}
            for m in self.router.models()
            if caller.may_name(m.id, aliases)
        ]
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready while not draining; the state store answering (`state: ok`) or not (`degraded`)."""
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        try:
            async with asyncio.timeout(max(4 * self.router.policy.state.socket_timeout, 0.5)):
                await self.router.store.drained()
            state = "ok"
        except Exception:  # the store is away: this worker serves on its local state
            state = "degraded"
        status = "ready" if state == "ok" else "degraded"
        body = {"status": status, "state": state, "policy_version": self.router.version}
        return web.json_response({**body, "worker": self.router.worker})

    async def prometheus(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            raise web.HTTPNotFound(text="metrics need the `metrics` extra (prometheus-client)")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.Response(body=generate_latest(self.metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Watched:
    """A router stream, and the completion it ended with (for the key's budget)."""

    def __init__(self, items: AsyncIterator[Item]) -> None:
        self._items = items
        self.completion: Completion | None = None

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Item:
        item = await anext(self._items)
        if isinstance(item, Completion):
            self.completion = item
        return item

    async def after(self, first: Item) -> AsyncIterator[Item]:
        yield first
        async for item in self:
            yield item

    async def aclose(self) -> None:
        closer = getattr(self._items, "aclose", None)
        if closer is not None:
            await closer()


def _answer_headers(completion: Completion, call: WireCall) -> dict[str, str]:
    calls = sum(1 for attempt in completion.attempts if attempt.outcome not in SKIPS)
    headers = {
        "x-router-target": completion.target,
        "x-router-attempts": str(calls),
        "x-router-cost-usd": f"{completion.cost_usd:.8f}",
    }
    if call.ignored:
        headers["x-router-ignored"] = ",".join(call.ignored)
    return headers


def _failed(wire: Wire, error: Exception) -> web.Response:
    failure = failure_of(error)
    if failure is None:
        logger.exception("the gateway failed on a request")
        failure = _BUG
    attempts = getattr(error, "attempts", ())
    extra = {"x-router-attempts": str(sum(1 for a in attempts if a.outcome not in SKIPS))} if attempts else {}
    return _error(wire, failure, extra)


def _error(wire: Wire, failure: Failure, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = {"x-router-error-kind": failure.kind, **(headers or {})}
    if failure.retry_after is not None:
        all_headers["Retry-After"] = str(max(1, round(failure.retry_after)))
    return web.json_response(wire.error(failure), status=failure.status, headers=all_headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
