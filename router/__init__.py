"""router: a YAML policy compiled into a resilient completion function for LLM calls.

    router = Router.from_file("policy.yaml")
    completion = await router.complete("chat", [{"role": "user", "content": "Hello"}])

Everything public is re-exported here; other modules may change without notice.
"""

from router._router import Router
from router.clock import Clock, SystemClock
from router.errors import (
    AllTargetsFailed,
    BudgetExceeded,
    ErrorKind,
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
from router.results import Attempt, Completion, Outcome, StreamRestart, TargetStatus, ToolCall, Usage
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
    "ErrorKind",
    "Event",
    "FailoverEvent",
    "Health",
    "HealthEvent",
    "MemoryStore",
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
