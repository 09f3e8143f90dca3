"""Provider adapters, one per wire protocol; `build_provider` builds the one the policy's `type` names
(`router.providers.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.errors import PolicyError, PolicyIssue
from router.providers.base import Call, Chunk, Message, Provider, Reply
from router.providers.registry import PROVIDER_TYPES

if TYPE_CHECKING:  # a policy check reads the registry through this package: asyncio (the clock) not needed
    from collections.abc import Mapping

    from router.clock import Clock
    from router.policy.model import ProviderSpec

__all__ = [
    "Call",
    "Chunk",
    "Message",
    "Provider",
    "Reply",
    "build_provider",
    "client_with_keys",
    "provider_keys",
]


def build_provider(
    name: str, spec: ProviderSpec, *, clock: Clock, environ: Mapping[str, str], source: str = "<policy>"
) -> Provider:
    """The client for one provider of the policy, built now; a key pool when it lists several keys.

    Missing credentials fail here, naming the variable to set. (The router builds its clients on
    their first call instead: `router.providers.lazy`.)
    """
    return client_with_keys(name, spec, provider_keys(name, spec, environ=environ, source=source), clock)


def provider_keys(name: str, spec: ProviderSpec, *, environ: Mapping[str, str], source: str) -> list[str]:
    """The API keys of one provider: the policy's, else the one in its type's variable (none for a type
    that needs no key). A missing one is a `PolicyError` at the provider's `api_key`."""
    keys = spec.api_key_values()
    variable = PROVIDER_TYPES[spec.type].key_variable
    if keys or not variable:
        return keys
    if not environ.get(variable):
        raise PolicyError(
            [
                PolicyIssue(
                    source,
                    0,
                    0,
                    f"providers.{name}.api_key",
                    f"no API key: set api_key in the policy or {variable} in the environment",
                )
            ]
        )
    return [environ[variable]]


def client_with_keys(name: str, spec: ProviderSpec, keys: list[str], clock: Clock) -> Provider:
    """The client of provider `name` for `keys` (`provider_keys`): a key pool when there are several."""
    entry = PROVIDER_TYPES[spec.type]
    if len(keys) > 1:
        from router.providers.pool import KeyPool

        members = [(key, entry.build(name, spec, key)) for key in keys]
        return KeyPool(name, members, clock, max_rest=spec.breaker.max_reset_timeout)
    return entry.build(name, spec, keys[0] if keys else None)
