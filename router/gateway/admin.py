"""The admin endpoints, behind `gateway.admin_key`: `GET /admin/status`, `POST /admin/drain/{target}`,
`POST /admin/restore/{target}`, `POST /admin/reload`. Without an admin key in the policy they answer 404.

A drain or restore is the fleet's (`Router.drain`). A reload is this worker's first (`Router.areload`:
the last good policy stays on a bad edit, and the answer lists the issues); once it took, the other
workers of `router serve --workers N` are told to reload the same file (the parent's SIGHUP), so that
the fleet does not serve two policies behind one port.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from router.errors import PolicyError, RouterError

if TYPE_CHECKING:
    from router.gateway.app import Gateway

__all__ = ["add_routes"]


def add_routes(app: web.Application, gateway: Gateway) -> None:
    def guarded(handler: Any) -> Any:
        async def guard(request: web.Request) -> web.StreamResponse:
            keys = gateway.keys
            if not keys.has_admin:
                raise web.HTTPNotFound()
            if not keys.is_admin(request.headers):
                return web.json_response(
                    {"error": {"message": "the admin key is needed", "code": "unauthorized"}}, status=401
                )
            response: web.StreamResponse = await handler(request, gateway)
            return response

        return guard

    app.add_routes(
        [
            web.get("/admin/status", guarded(_status)),
            web.post("/admin/drain/{target}", guarded(_drain)),
            web.post("/admin/restore/{target}", guarded(_restore)),
            web.post("/admin/reload", guarded(_reload)),
        ]
    )


async def _status(request: web.Request, gateway: Gateway) -> web.Response:
    rows = [_plain(dataclasses.asdict(row)) for row in await gateway.router.status()]
    return web.json_response({"policy_version": gateway.router.version, "targets": rows})


async def _drain(request: web.Request, gateway: Gateway) -> web.Response:
    return await _set(request, gateway, drained=True)


async def _restore(request: web.Request, gateway: Gateway) -> web.Response:
    return await _set(request, gateway, drained=False)


async def _set(request: web.Request, gateway: Gateway, *, drained: bool) -> web.Response:
    target = request.match_info["target"]
    try:
        await (gateway.router.drain(target) if drained else gateway.router.restore(target))
    except RouterError as error:
        return web.json_response({"error": {"message": str(error), "code": "unknown_target"}}, status=404)
    return web.json_response({"target": target, "drained": drained})


async def _reload(request: web.Request, gateway: Gateway) -> web.Response:
    try:
        await gateway.router.areload()
    except PolicyError as error:
        issues = [str(issue) for issue in error.issues]
        body = {
            "error": {"message": "the policy was refused; the last good one serves", "code": "policy_refused"}
        }
        return web.json_response(
            {**body, "issues": issues, "policy_version": gateway.router.version}, status=422
        )
    if gateway.reload_others is not None:
        gateway.reload_others()
    return web.json_response({"policy_version": gateway.router.version})


def _plain(value: Any) -> Any:
    """JSON of a status row: enums as their values."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return str(value) if hasattr(value, "value") else value
