"""router: a YAML policy compiled into a resilient completion function for LLM calls.

    router = Router.from_file("policy.yaml")
    completion = await router.complete("chat", [{"role": "user", "content": "Hello"}])

Everything public is re-exported here; other modules may change without notice.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from router._router import Router
    from router.clock import Clock, SystemClock
    from router.control import Control
    from router.errors import (
        AllTargetsFailed,
        BudgetExceeded,
        ErrorKind,
        InvalidRequest,
        PolicyError,
        PolicyIssue,
        ProviderError,
        RouterError,
        StoreUnavailable,
        StreamBroken,
    )
    from router.events import AttemptEvent, Event, FailoverEvent, HealthEvent, ReloadEvent, RetryEvent
    from router.policy.loader import load_policy, parse_policy, policy_json_schema
    from router.policy.model import Policy, ProviderSpec, StateSpec
    from router.providers.base import Call, Chunk, Provider, Reply
    from router.providers.registry import ProviderType, register_provider
    from router.resilience.breaker import BreakerState, BreakerTransition
    from router.resilience.runtime import Health
    from router.results import (
        Attempt,
        Completion,
        ModelEntry,
        Outcome,
        StreamRestart,
        TargetStatus,
        ToolCall,
        Usage,
    )
    from router.state.base import StateStore
    from router.state.memory import MemoryStore
    from router.state.registry import StoreType, register_store
    from router.strategies import Candidate, Strategy, register_strategy

__all__ = [
    "AllTargetsFailed",
    "Attempt",
    "AttemptEvent",
    "BreakerState",
    "BreakerTransition",
    "BudgetExceeded",
    "Call",
    "Candidate",
    "Chunk",
    "Clock",
    "Completion",
    "Control",
    "ErrorKind",
    "Event",
    "FailoverEvent",
    "Health",
    "HealthEvent",
    "InvalidRequest",
    "MemoryStore",
    "ModelEntry",
    "Outcome",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Provider",
    "ProviderError",
    "ProviderSpec",
    "ProviderType",
    "ReloadEvent",
    "Reply",
    "RetryEvent",
    "Router",
    "RouterError",
    "StateSpec",
    "StateStore",
    "StoreType",
    "StoreUnavailable",
    "Strategy",
    "StreamBroken",
    "StreamRestart",
    "SystemClock",
    "TargetStatus",
    "ToolCall",
    "Usage",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
    "register_provider",
    "register_store",
    "register_strategy",
]

# Each public name's home, imported on the name's first use (PEP 562): `import router` alone loads
# none of them, so a command or a library that needs only part of the router (the CLI's --help, a
# policy check) does not pay for the engine, pydantic or any SDK. The block above is the same list
# for type checkers and editors.
_HOMES = {
    "router._router": ("Router",),
    "router.clock": ("Clock", "SystemClock"),
    "router.control": ("Control",),
    "router.errors": (
        "AllTargetsFailed",
        "BudgetExceeded",
        "ErrorKind",
        "InvalidRequest",
        "PolicyError",
        "PolicyIssue",
        "ProviderError",
        "RouterError",
        "StoreUnavailable",
        "StreamBroken",
    ),
    "router.events": ("AttemptEvent", "Event", "FailoverEvent", "HealthEvent", "ReloadEvent", "RetryEvent"),
    "router.policy.loader": ("load_policy", "parse_policy", "policy_json_schema"),
    "router.policy.model": ("Policy", "ProviderSpec", "StateSpec"),
    "router.providers.base": ("Call", "Chunk", "Provider", "Reply"),
    "router.providers.registry": ("ProviderType", "register_provider"),
    "router.resilience.breaker": ("BreakerState", "BreakerTransition"),
    "router.resilience.runtime": ("Health",),
    "router.results": (
        "Attempt",
        "Completion",
        "ModelEntry",
        "Outcome",
        "StreamRestart",
        "TargetStatus",
        "ToolCall",
        "Usage",
    ),
    "router.state.base": ("StateStore",),
    "router.state.memory": ("MemoryStore",),
    "router.state.registry": ("StoreType", "register_store"),
    "router.strategies": ("Candidate", "Strategy", "register_strategy"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


# Hidden from type checkers, which read the imports above: a misspelt name stays an error for them.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> _typing.Any:
        module = _HOME_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value  # found once: later uses are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
