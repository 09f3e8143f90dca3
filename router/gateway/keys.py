"""Who may call the gateway: the policy's `gateway.keys`, each with the routes and controls it may use,
its requests per minute and its budget, both shared by the fleet.

A key is found by the SHA-256 of what the caller sent (`Authorization: Bearer ...` or `x-api-key`),
so the lookup's time says nothing about any key; the admin key is compared with
`hmac.compare_digest`. A key's `rpm` and budget are buckets of the state store spent from this
worker's leases (`router._quota`, as a target's `rpm` and a route's budget are): a request never
waits on the store. A budget is spent by each answer's cost; a request reserves the key's typical
cost when it starts, settled with the real one when it ends, so the fleet overspends it by at most
the leases outstanding (see `router._quota`). No keys: anyone who reaches the gateway may call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from router._quota import Lease, Quotas
from router.gateway.failures import Refusal
from router.logs import register_secrets
from router.policy.model import GatewayKeySpec, GatewaySpec

__all__ = ["Caller", "Keys", "Spend"]

_PERIOD = {"hour": 3600.0, "day": 86_400.0}
_RPM_WAIT = 0.5  # how long a request may wait for its key's lease to be refilled
_UNKNOWN = "a valid key is needed: Authorization: Bearer <key> or x-api-key: <key>"


@dataclass(slots=True)
class Caller:
    """The key a request came with (`name` as the policy names it; never the secret); `spec` None: open."""

    name: str
    spec: GatewayKeySpec | None
    # What an answer of this key typically costs: the budget's reservation (a decaying average).
    typical_cost: float = field(default=0.0)

    def may_name(self, route: str, aliases: Mapping[str, str]) -> bool:
        routes = self.spec.routes if self.spec is not None else None
        return routes is None or route in routes or aliases.get(route, "") in routes

    def refused_controls(self, control: Mapping[str, object]) -> list[str]:
        if self.spec is None:
            return []
        allowed = set(self.spec.control)
        return sorted(name for name in control if name.replace("-", "_") not in allowed)


@dataclass(frozen=True, slots=True)
class Spend:
    """A request's reservation of its key's budget, settled once with the real cost."""

    lease: Lease | None
    reserved: float

    def settle(self, cost: float) -> None:
        if self.lease is not None:
            self.lease.settle(cost - self.reserved)


_NOTHING = Spend(None, 0.0)


class Keys:
    """The key table of one policy; rebuilt on every reload (the leases are the quotas', and carry over)."""

    def __init__(self, spec: GatewaySpec | None, quotas: Quotas) -> None:
        spec = spec or GatewaySpec()
        self._quotas = quotas
        self._callers = {
            _digest(key.key.get_secret_value()): Caller(name, key) for name, key in spec.keys.items()
        }
        self._admin = _digest(spec.admin_key.get_secret_value()) if spec.admin_key is not None else None
        register_secrets(key.key.get_secret_value() for key in spec.keys.values())
        if spec.admin_key is not None:
            register_secrets([spec.admin_key.get_secret_value()])
        self._open = Caller("", None)

    @property
    def open(self) -> bool:
        """No keys: every request is served."""
        return not self._callers

    @property
    def has_admin(self) -> bool:
        return self._admin is not None

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """The caller the headers name; 401 for a missing or unknown key (unless the gateway is open)."""
        if self.open:
            return self._open
        secret = presented(headers)
        caller = self._callers.get(_digest(secret)) if secret else None
        if caller is None:
            raise Refusal(401, "unauthorized", _UNKNOWN)
        return caller

    def is_admin(self, headers: Mapping[str, str]) -> bool:
        secret = presented(headers)
        return (
            self._admin is not None
            and secret is not None
            and hmac.compare_digest(_digest(secret), self._admin)
        )

    async def admit(self, caller: Caller) -> Spend:
        """Take one request of the key's `rpm` and reserve its budget; 429 when either is spent."""
        spec = caller.spec
        if spec is None:
            return _NOTHING
        if spec.rpm is not None:
            lease = self._quotas.lease(f"gateway:rpm:{caller.name}", spec.rpm, spec.rpm / 60, credit=False)
            if not await lease.acquire(1.0, _RPM_WAIT):
                raise Refusal(
                    429, "key_rate_limited", f"this key's limit of {spec.rpm} requests a minute is reached"
                )
        if spec.budget is None:
            return _NOTHING
        usd, period = spec.budget.usd, _PERIOD[spec.budget.per]
        lease = self._quotas.lease(f"gateway:budget:{caller.name}", usd, usd / period, credit=True)
        reserved = caller.typical_cost or usd / 1000
        if not lease.take(reserved):
            raise Refusal(
                429, "key_budget_spent", f"this key's budget of ${usd:g} per {spec.budget.per} is spent"
            )
        return Spend(lease, reserved)

    def spent(self, caller: Caller, spend: Spend, cost: float) -> None:
        """Settle a reservation with what the answer cost (0 when there was none)."""
        spend.settle(cost)
        if cost > 0:
            caller.typical_cost = cost if not caller.typical_cost else caller.typical_cost * 0.8 + cost * 0.2


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, else `x-api-key`."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
