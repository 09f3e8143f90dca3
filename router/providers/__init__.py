"""Provider adapters, one per wire protocol; `build_provider` picks one by the policy's `type`."""

from __future__ import annotations

from router.policy.model import ProviderSpec
from router.providers.base import Call, Chunk, Message, Provider, Reply

__all__ = ["Call", "Chunk", "Message", "Provider", "Reply", "build_provider"]


def build_provider(name: str, spec: ProviderSpec) -> Provider:
    # Adapters import their SDKs lazily: a policy pays only for the SDKs it uses.
    if spec.type in ("openai", "openai_compatible"):
        from router.providers.openai import OpenAIProvider

        return OpenAIProvider(name, spec, spec.api_key.get_secret_value() if spec.api_key else None)
    raise AssertionError(f"unhandled provider type {spec.type!r}")  # the policy model admits no other
