"""Provider types by name: what a policy's `type:` builds, and everything else that varies by type.

A type is one `ProviderType` entry: how to build its client from the provider's spec, which spec
fields it needs and which only it takes, the variable its key is read from, the wire protocol it
speaks (which the fake upstream and the chaos simulation stand in for) and its LiteLLM prefix. The
OpenAI-compatible services are entries too (`ProviderType.openai_compatible`). `register_provider`
adds a type of the user's own; a policy may name it as soon as it is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router._registry import Registry
from router.providers.presets import Preset

if TYPE_CHECKING:
    from router.policy.model import ProviderSpec
    from router.providers.base import Provider

__all__ = ["PROVIDER_TYPES", "ProviderType", "register_provider", "spec_problem"]

Build = Callable[[str, "ProviderSpec", "str | None"], "Provider"]

_AWS_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


@dataclass(frozen=True, slots=True)
class ProviderType:
    """One provider type of the policy language.

    `build(name, spec, key)` makes the client of provider `name` for one API key (None: the policy
    and the environment give none); a policy with several keys gets a pool of such clients. When the
    policy gives no key, it is read from `key_variable` (unset: none is needed), and a missing one
    fails at load time. `needs`: spec fields it cannot do without; `takes`: spec fields that only
    the types listing them may set; `check`: any other rule of its spec (the problem, or None).
    `wire`: the protocol it speaks, by the fake upstream's name for it (openai, azure, anthropic,
    bedrock, google), which chaos runs and `router simulate` put in its place; `credentials`: the fields a
    chaos run fills with placeholders; `litellm`: LiteLLM's prefix for its models (None: not mapped).
    `sdk`: the module its adapter imports and the extra of this package that installs it (None: a
    dependency of the package), checked when a policy names the type, without importing it.
    """

    name: str
    build: Build
    key_variable: str | None = None
    needs: tuple[str, ...] = ()
    takes: tuple[str, ...] = ()
    check: Callable[[ProviderSpec], str | None] | None = None
    wire: str = "openai"
    credentials: tuple[str, ...] = ("api_key",)
    litellm: str | None = "openai"
    preset: Preset | None = None
    sdk: tuple[str, str] | None = None

    @classmethod
    def openai_compatible(
        cls,
        name: str,
        base_url: str,
        key_variable: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        stream_usage: bool = True,
    ) -> ProviderType:
        """An OpenAI-compatible service at a known address (a preset), so that a policy says `type: groq`
        instead of `openai_compatible` and the base_url; `key_variable` None: a local server that takes
        no key. `base_url` and `api_key` in the policy still win; the policy's headers override
        `headers`; `stream_usage=False` for a server that rejects `stream_options`.
        """
        settings = Preset(base_url, headers or {}, stream_usage)
        return cls(name, _openai, key_variable=key_variable, preset=settings)


# Adapters import their SDKs lazily: a policy pays only for the SDKs it uses.
def _openai(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    from router.providers.openai import OpenAIProvider

    return OpenAIProvider(name, spec, key, PROVIDER_TYPES[spec.type].preset)


def _anthropic(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    from router.providers.anthropic import AnthropicProvider

    return AnthropicProvider(name, spec, key)


def _bedrock(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    from router.providers.bedrock import BedrockProvider

    return BedrockProvider(name, spec, key)


def _gemini(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    from router.providers.google import GoogleProvider

    return GoogleProvider(name, spec, key, vertex=False)


def _vertex(name: str, spec: ProviderSpec, key: str | None) -> Provider:
    from router.providers.google import GoogleProvider

    return GoogleProvider(name, spec, key, vertex=True)


def _aws_credentials(spec: ProviderSpec) -> str | None:
    if spec.api_key or spec.api_keys:
        return "a bedrock provider takes AWS credentials (aws_access_key_id, ...), not api_key"
    if bool(spec.aws_access_key_id) != bool(spec.aws_secret_access_key):
        return "give both aws_access_key_id and aws_secret_access_key, or neither (the AWS chain)"
    return None


_preset = ProviderType.openai_compatible

PROVIDER_TYPES: Registry[ProviderType] = Registry(
    "provider type",
    [
        ProviderType("openai", _openai, key_variable="OPENAI_API_KEY"),
        ProviderType(
            "azure_openai",
            _openai,
            key_variable="AZURE_OPENAI_API_KEY",
            needs=("base_url", "api_version"),
            takes=("api_version",),
            wire="azure",
            litellm="azure",
        ),
        ProviderType(
            "anthropic",
            _anthropic,
            key_variable="ANTHROPIC_API_KEY",
            wire="anthropic",
            litellm="anthropic",
            sdk=("anthropic", "anthropic"),
        ),
        ProviderType(
            "bedrock",
            _bedrock,
            needs=("region",),
            takes=(*_AWS_FIELDS, "region"),
            check=_aws_credentials,
            wire="bedrock",
            credentials=("aws_access_key_id", "aws_secret_access_key"),
            litellm=None,
            sdk=("boto3", "bedrock"),
        ),
        ProviderType(
            "gemini",
            _gemini,
            key_variable="GEMINI_API_KEY",
            takes=("thinking_budget",),
            wire="google",
            litellm="gemini",
            sdk=("google.genai", "google"),
        ),
        # Credentials: api_key (express mode), credentials_file (a service account) or Google's chain;
        # a chaos run fills api_key, which keeps the SDK from Google's token endpoint.
        ProviderType(
            "vertex",
            _vertex,
            needs=("project",),
            takes=("project", "location", "credentials_file", "thinking_budget"),
            wire="google",
            litellm="vertex_ai",
            sdk=("google.genai", "google"),
        ),
        ProviderType("openai_compatible", _openai, needs=("base_url",)),
        _preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        _preset("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        _preset("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        _preset("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        # Mistral rejects `stream_options`; without it, a stream carries no usage.
        _preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", stream_usage=False),
        # OpenRouter ranks apps by these attribution headers.
        _preset(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            headers={"HTTP-Referer": "https://github.com/router-llm/router", "X-Title": "router"},
        ),
        _preset("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
        _preset("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
        # Gemini on Google's OpenAI-compatible endpoint; `gemini` is the native wire.
        _preset("gemini_openai", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
        _preset("ollama", "http://localhost:11434/v1", None),
        _preset("vllm", "http://localhost:8000/v1", None),
        _preset("lmstudio", "http://localhost:1234/v1", None),
    ],
)


def register_provider(entry: ProviderType, *, replace: bool = False) -> ProviderType:
    """Make `type: <entry.name>` a provider type of every policy validated from now on.

    A name already registered (built-in or not) is refused unless `replace`.
    """
    return PROVIDER_TYPES.register(entry, replace=replace)


def spec_problem(spec: ProviderSpec) -> str | None:
    """What is wrong with the fields of `spec` for its type, or None."""
    entry = PROVIDER_TYPES[spec.type]
    missing = [field for field in entry.needs if not getattr(spec, field)]
    if missing:
        article = "an" if entry.name[:1] in "aeiou" else "a"
        return f"{article} {entry.name} provider needs {' and '.join(missing)}"
    problem = entry.check(spec) if entry.check is not None else None
    if problem:
        return problem
    # Fields that some types take and this one does not, grouped by the types that take them.
    owners: dict[str, list[str]] = {}
    for other in PROVIDER_TYPES.entries():
        for field in other.takes:
            if field not in entry.takes:
                owners.setdefault(field, []).append(other.name)
    stray: dict[tuple[str, ...], list[str]] = {}
    for field, types in owners.items():
        if getattr(spec, field, None):
            stray.setdefault(tuple(types), []).append(field)
    problems = [
        f"{', '.join(fields)}: only for {', '.join(types)} providers" for types, fields in stray.items()
    ]
    return "; ".join(problems) or None
