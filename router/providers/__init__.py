"""Provider adapters, one per wire protocol; `build_provider` builds the one the policy's `type` names
(`router.providers.registry`)."""

from __future__ import annotations

from collections.abc import Mapping

from router.clock import Clock
from router.errors import PolicyError, PolicyIssue
from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk, Message, Provider, Reply
from router.providers.registry import PROVIDER_TYPES

__all__ = ["Call", "Chunk", "Message", "Provider", "Reply", "build_provider"]


def build_provider(
    name: str, spec: ProviderSpec, *, clock: Clock, environ: Mapping[str, str], source: str = "<policy>"
) -> Provider:
    """The client for one provider of the policy; a key pool when it lists several keys.

    Missing credentials fail here, at load time, naming the variable to set.
    """
    entry = PROVIDER_TYPES[spec.type]
    keys = spec.api_key_values()
    variable = entry.key_variable
    if not keys and variable:
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
        keys = [environ[variable]]
    if len(keys) > 1:
        from router.providers.pool import KeyPool

        members = [(key, entry.build(name, spec, key)) for key in keys]
        return KeyPool(name, members, clock, max_rest=spec.breaker.max_reset_timeout)
    return entry.build(name, spec, keys[0] if keys else None)
