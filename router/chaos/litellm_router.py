"""LiteLLM's Router under the same chaos load: the other side of `router chaos --compare litellm`.

It is configured from the policy as closely as LiteLLM's features allow (`litellm_config`):

- each target of the route is a model group of one deployment at the fake upstream, on the
  target's wire (its type's LiteLLM prefix: `openai/`, `azure/`, `anthropic/`),
  with the SDK's own retries off (`max_retries: 0`), as ours are;
- the route's order is the fallback chain (`fallbacks: [{first: [second, third]}]`);
- `retry.attempts - 1` is `num_retries`; `per_attempt` (else `total`) is `timeout`;
- the primary's breaker is the cooldown: `reset_timeout` is `cooldown_time` and `fail_max - 1`
  is `allowed_fails` (LiteLLM cools a deployment down when its failures exceed it).

What it cannot express is listed in the notes (`LITELLM_GAPS`). Which deployments a request
called is taken from LiteLLM's own pre-call check (a callback), so the report can tell a
request that skipped the primary from one that called it and failed over.

It never touches the network: the cost map is read from the package
(`LITELLM_LOCAL_MODEL_COST_MAP`), telemetry and logging callbacks are off. Importing this
module needs the `bench` extra.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import re
from typing import Any

from router.chaos.load import Answer
from router.chaos.scenario import Load
from router.chaos.upstream import reply_for
from router.policy.compile import compile_plan
from router.policy.model import Policy, TargetRef
from router.providers.registry import PROVIDER_TYPES

__all__ = ["LITELLM_GAPS", "LiteLLMContender", "litellm_config"]

LITELLM_GAPS = (
    "LiteLLM never skips a model group's only deployment, cooling down or not: each target is a "
    "group of its own (the fallback chain), so a dead primary is called again by every request",
    "no deadline across retries and fallbacks (timeout is per call), no retry budget, no half-open probe, "
    "no hedging, no first-token or idle timeout on streams",
    "cooldown and allowed_fails are router-wide (taken from the primary's provider)",
)

_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

# The calls of the request being sent, appended to by the pre-call check: each request runs in
# a task of its own, so its context holds its own list.
_calls: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("chaos_litellm_calls", default=None)


def litellm_config(policy: Policy, route: str) -> dict[str, Any]:
    """The keyword arguments of `litellm.Router` for `route` of a policy pinned to the fake upstream."""
    spec = policy.routes[route]
    names = [entry.target if isinstance(entry, TargetRef) else entry for entry in spec.targets]
    model_list = []
    for name in names:
        target = policy.targets[name]
        provider = policy.providers[target.provider]
        prefix = PROVIDER_TYPES[provider.type].litellm
        if prefix is None:
            raise ValueError(f"target {name!r}: {provider.type} targets are not mapped to LiteLLM here")
        params: dict[str, Any] = {
            "model": f"{prefix}/{target.model}",
            "api_base": provider.base_url,
            "api_key": "chaos",  # the fake upstream takes any key
            "max_retries": 0,
        }
        if provider.api_version:
            params["api_version"] = provider.api_version
        model_list.append({"model_name": name, "litellm_params": params, "model_info": {"id": name}})
    breaker = policy.providers[policy.targets[names[0]].provider].breaker
    timeout = spec.latency_budget.per_attempt or spec.latency_budget.total
    return {
        "model_list": model_list,
        "fallbacks": [{names[0]: names[1:]}] if len(names) > 1 else [],
        "num_retries": spec.retry.attempts - 1,
        "timeout": timeout,
        "stream_timeout": timeout,
        "cooldown_time": breaker.reset_timeout,
        "allowed_fails": breaker.fail_max - 1,
    }


def _import_litellm() -> Any:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # read at import: no cost-map download
    os.environ["LITELLM_TELEMETRY"] = "False"
    litellm: Any = importlib.import_module("litellm")
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its failures are counted, not printed
    return litellm


def _recorder(litellm: Any) -> Any:
    base = importlib.import_module("litellm.integrations.custom_logger").CustomLogger

    class CallRecorder(base):  # type: ignore[misc, valid-type]
        """Notes each deployment LiteLLM is about to call, in the calling request's list."""

        async def async_pre_call_check(self, deployment: dict[str, Any], parent_otel_span: Any) -> None:
            calls = _calls.get()
            if calls is not None:
                calls.append(str(deployment["model_info"]["id"]))

    return CallRecorder()


class LiteLLMContender:
    """Requests through `litellm.Router.acompletion`, configured by `litellm_config`."""

    name = "litellm"
    origin = 0.0

    def __init__(self, policy: Policy, *, route: str) -> None:
        self._litellm = _import_litellm()
        self._plan = compile_plan(policy)
        self._first = self._plan.routes[route].targets[0].name
        # Module-wide lists: start from empty ones, so an earlier run's router and callbacks are gone.
        self._litellm.callbacks = []
        self._litellm.success_callback = []
        self._litellm.failure_callback = []
        self._litellm._async_success_callback = []
        self._litellm._async_failure_callback = []
        self.router = self._litellm.Router(**litellm_config(policy, route))
        self._litellm.callbacks.append(_recorder(self._litellm))

    async def start(self) -> None:
        return None

    async def send(self, load: Load) -> Answer:
        calls: list[str] = []
        _calls.set(calls)
        usage: Any = None
        try:
            response = await self.router.acompletion(
                model=self._first,
                messages=[{"role": "user", "content": load.prompt}],
                max_tokens=load.max_tokens,
                stream=load.stream,
                **({"stream_options": {"include_usage": True}} if load.stream else {}),
            )
            if load.stream:
                parts = []
                async for chunk in response:
                    if chunk.choices:
                        parts.append(chunk.choices[0].delta.content or "")
                    usage = getattr(chunk, "usage", None) or usage
                text = "".join(parts)
            else:
                text = response.choices[0].message.content or ""
                usage = response.usage
            target = str((response._hidden_params or {}).get("model_id"))
        except Exception as error:
            return Answer(None, _snake(type(error).__name__), attempts=_trail(calls))
        plan = self._plan.targets.get(target)
        if plan is None or text != reply_for(plan.model):
            return Answer(None, "wrong_answer", attempts=_trail(calls))
        cost = plan.cost(usage.prompt_tokens, usage.completion_tokens) if usage is not None else 0.0
        return Answer(target, None, cost, _trail(calls))

    async def status(self) -> None:
        return None

    async def aclose(self) -> None:
        # Run LiteLLM's queued logging and stop its worker, so no coroutine is left never awaited.
        try:
            worker = importlib.import_module(
                "litellm.litellm_core_utils.logging_worker"
            ).GLOBAL_LOGGING_WORKER
        except (ImportError, AttributeError):  # another LiteLLM version: its leftovers only cost a warning
            worker = None
        if worker is not None:
            await worker.clear_queue()
            await worker.stop()
        self._litellm.callbacks = []


def _trail(calls: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, "called") for name in calls)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
