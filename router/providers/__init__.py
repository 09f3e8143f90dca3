"""Provider adapters, one per wire protocol; `build_provider` picks one by the policy's `type`."""

from __future__ import annotations

from collections.abc import Mapping

from router.clock import Clock
from router.errors import PolicyError, PolicyIssue
from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk, Message, Provider, Reply
from router.providers.presets import KEY_VARIABLES, PRESETS

__all__ = ["Call", "Chunk", "Message", "Provider", "Reply", "build_provider"]


def build_provider(
    name: str, spec: ProviderSpec, *, clock: Clock, environ: Mapping[str, str], source: str = "<policy>"
) -> Provider:
    """The client for one provider of the policy; a key pool when it lists several keys.

    Missing credentials fail here, at load time, naming the variable to set.
    """
    keys = spec.api_key_values()
    variable = KEY_VARIABLES.get(spec.type)
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
    if spec.type == "bedrock" and bool(spec.aws_access_key_id) != bool(spec.aws_secret_access_key):
        raise PolicyError(
            [
                PolicyIssue(
                    source,
                    0,
                    0,
                    f"providers.{name}",
                    "give both aws_access_key_id and aws_secret_access_key, or neither (the AWS chain)",
                )
            ]
        )
    if len(keys) > 1:
        from router.providers.pool import KeyPool

        members = [(key, _adapter(name, spec, key)) for key in keys]
        return KeyPool(name, members, clock, max_rest=spec.breaker.max_reset_timeout)
    return _adapter(name, spec, keys[0] if keys else None)


def _adapter(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    # Adapters import their SDKs lazily: a policy pays only for the SDKs it uses.
    if spec.type == "anthropic":
        from router.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, spec, key)
    if spec.type == "bedrock":
        from router.providers.bedrock import BedrockProvider

        return BedrockProvider(name, spec)
    from router.providers.openai import OpenAIProvider

    return OpenAIProvider(name, spec, key, PRESETS.get(spec.type))
