"""OpenAI-compatible services by name: where they live, which variable holds the key, their quirks.

A policy says `type: groq` instead of spelling out `openai_compatible` and the base_url.
`base_url` and `api_key` in the policy still win over the preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["KEY_VARIABLES", "PRESETS", "Preset"]


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    key_env: str | None  # None: a local server that takes no key
    headers: Mapping[str, str] = field(default_factory=dict)
    # Some servers reject `stream_options`; without it, a stream carries no usage.
    stream_usage: bool = True


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY"),
        "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY", stream_usage=False),
        # OpenRouter ranks apps by these attribution headers; a policy's own headers override them.
        "openrouter": Preset(
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            headers={"HTTP-Referer": "https://github.com/router-llm/router", "X-Title": "router"},
        ),
        "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
        "cerebras": Preset("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
        "gemini": Preset("https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
        "ollama": Preset("http://localhost:11434/v1", None),
        "vllm": Preset("http://localhost:8000/v1", None),
        "lmstudio": Preset("http://localhost:1234/v1", None),
    }
)

# The variable each wire reads its key from when the policy gives none.
KEY_VARIABLES: Mapping[str, str] = MappingProxyType(
    {
        "openai": "OPENAI_API_KEY",
        "azure_openai": "AZURE_OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        **{name: preset.key_env for name, preset in PRESETS.items() if preset.key_env},
    }
)
