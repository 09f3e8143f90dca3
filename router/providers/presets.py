"""What the OpenAI adapter needs to know of an OpenAI-compatible service it reaches by name.

The services themselves are provider types (`router.providers.registry.preset`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Preset"]


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    # Some servers reject `stream_options`; without it, a stream carries no usage.
    stream_usage: bool = True
