"""The fake upstream's side of a chaos run: the policy pointed at it, the fault schedule, its log.

A chaos run never calls a real provider: `pin_policy` points every provider of the policy at the
fake upstream (at the base URL of the wire its type speaks) and replaces their credentials, so a
production policy runs unchanged and without keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from router.chaos.recording import UpstreamCall
from router.policy.model import Policy, ProviderSpec, StateSpec
from router.providers.registry import PROVIDER_TYPES
from router.testing import FakeUpstream, FaultRule
from router.testing.fake_upstream import client_url

__all__ = ["Endpoints", "install_faults", "pin_policy", "reply_for", "serve_models", "upstream_calls"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a fake upstream listens: `root` (Anthropic, Azure, Bedrock) and `root/v1` (OpenAI wire).

    `started` is the monotonic time it started: fault windows and its log count from there.
    """

    root: str
    started: float

    @classmethod
    def of(cls, upstream: FakeUpstream) -> Endpoints:
        return cls(upstream.azure_endpoint, time.monotonic() - upstream.elapsed())


def reply_for(model: str) -> str:
    """What the fake upstream answers for `model` in a chaos run: several words, so streams can break.

    It begins with the model's name, so a stream that another model continued from its first words
    is told apart from one that model answered itself (the text is the first model's reply).
    """
    return f"{model} says hello: this answer came through whole, word by word."


def serve_models(upstream: FakeUpstream, models: Iterable[str]) -> None:
    for model in models:
        upstream.set_reply(model, reply_for(model))


def pin_policy(policy: Policy, endpoints: Endpoints, state: StateSpec | None = None) -> Policy:
    """`policy` with every provider at the fake upstream, placeholder credentials, and `state`
    (default: in memory) instead of its own."""
    providers = {name: _pinned(spec, endpoints) for name, spec in policy.providers.items()}
    return policy.model_copy(update={"providers": providers, "state": state or StateSpec()})


def _pinned(spec: ProviderSpec, endpoints: Endpoints) -> ProviderSpec:
    kind = PROVIDER_TYPES[spec.type]
    update: dict[str, object] = {"base_url": client_url(endpoints.root, kind.wire)}
    # Every real secret goes; placeholders fill the type's credentials (for Bedrock they also keep
    # boto3 from looking for real ones: files, instance metadata).
    update |= {name: None for name, value in spec if isinstance(value, SecretStr)}
    if spec.api_keys and "api_key" in kind.credentials:
        update["api_keys"] = [SecretStr(f"chaos-{index}") for index in range(len(spec.api_keys))]
    else:
        update |= {name: SecretStr("chaos") for name in kind.credentials}
    return spec.model_copy(update=update)


def install_faults(upstream: FakeUpstream, rules: Iterable[FaultRule], origin: float) -> None:
    """Schedule `rules` (times from the start of the load) on the upstream, the load starting at
    `origin` (monotonic)."""
    offset = origin - Endpoints.of(upstream).started
    for rule in rules:
        upstream.add_fault(
            rule.model,
            rule.fault,
            times=rule.times,
            after=rule.after,
            start=offset + (rule.start or 0.0),
            end=None if rule.end is None else offset + rule.end,
            probability=rule.probability,
        )


def upstream_calls(upstream: FakeUpstream, origin: float) -> list[UpstreamCall]:
    """Every chat request the upstream received (probes of its model listing left out), timed from
    `origin`."""
    offset = origin - Endpoints.of(upstream).started
    return [
        UpstreamCall(record.at - offset, record.model, record.fault, record.status)
        for record in upstream.log
        if record.method == "POST"
    ]
