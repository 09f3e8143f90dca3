"""`Router`: a compiled policy with a live client, breaker and limiter per target."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import secrets
import signal
import socket
import threading
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self, TypeVar

from pydantic import SecretStr

from router._budgets import Budgets
from router._engine import Engine
from router._fleet import Fleet, SharedBuckets
from router._quota import Quotas, buckets_of
from router._selection import Request, estimate_tokens, order_candidates, shaped
from router.clock import Clock, SystemClock
from router.control import Control
from router.errors import ErrorKind, InvalidRequest, PolicyError, PolicyIssue, ProviderError, RouterError
from router.events import Event, ReloadEvent
from router.health import HealthChecker
from router.logs import register_secrets
from router.options import checked_call
from router.policy.compile import Plan, TargetPlan, compile_plan, direct_target, single_target_route
from router.policy.loader import load_policy
from router.policy.model import LatencyBudget, Policy, ProviderSpec, StreamRecovery
from router.policy.source import dotted
from router.providers import Provider
from router.providers._http import secrets_of
from router.providers.base import Message
from router.providers.credentials import missing_credentials
from router.providers.lazy import LazyProvider, on_first_call
from router.resilience.breaker import Breaker, BreakerState, BreakerTransition
from router.resilience.breaker import warm as warm_breakers
from router.resilience.breaker import warmed as breakers_warmed
from router.resilience.limiter import Limiter
from router.resilience.retry_budget import RetryBudget
from router.resilience.runtime import Health, TargetRuntime
from router.results import Completion, ModelEntry, StreamRestart, TargetStatus
from router.state.base import StateStore
from router.state.registry import STORES

__all__ = ["Router"]

logger = logging.getLogger("router")
_T = TypeVar("_T")

# How often a replaced client's closer looks again whether the last calls on it have ended.
_RETIRE_POLL = 1.0
# The most `provider:model` addresses one plan serves (each is a runtime of its own).
_MAX_ADDRESSES = 1000
# Reloads started by a signal, kept until they end (the loop holds tasks only weakly).
_RELOADS: set[asyncio.Task[None]] = set()


class Router:
    """Routes completions by a policy: `await router.complete("chat", messages)`.

    `providers` replaces the client of a named provider (for tests and in-process fakes);
    `clock` and `seed` make timing and random choices reproducible; `store` replaces the state
    store the policy's `state` section names (a shared store makes this router one worker of a
    fleet); `worker` names this worker in the fleet; `on_event` receives every event of
    `router.events` (attempts, retries, failovers, breaker transitions, health, reloads).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        source: str = "<policy>",
        clock: Clock | None = None,
        providers: Mapping[str, Provider] | None = None,
        seed: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        store: StateStore | None = None,
        worker: str | None = None,
    ) -> None:
        # Long only because it is the one flat list of the router's state, each attribute set once.
        self.source = source
        self.version = 0
        self._clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._on_event = on_event
        self._overrides = dict(providers or {})
        unknown = sorted(set(self._overrides) - set(policy.providers))
        if unknown:
            raise RouterError(f"providers given for names the policy does not define: {', '.join(unknown)}")
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.store, self._fleet = self._join(policy, store)
        self._policy: Policy | None = None
        self._engine: Engine  # set by _install
        self._retry_budget: RetryBudget | None = None
        self._providers: dict[str, Provider] = {}
        self._built_routes: set[str] = set()  # routes whose providers' clients are built (see `_build`)
        self._runtimes: dict[str, TargetRuntime] = {}
        # Replaced clients not closed yet, and the tasks that wait to close them (see `_retire`).
        self._retired: list[Provider] = []
        self._retiring: dict[asyncio.Task[None], Provider] = {}
        self._all_runtimes: weakref.WeakSet[TargetRuntime] = weakref.WeakSet()
        self._grace = 0.0  # the longest any request may go on starting calls (see `_longest_request`)
        self._health: HealthChecker | None = None
        # Fleet limits and budgets are spent from this worker's leases of the store's buckets.
        self._quotas = Quotas(
            self.store,
            self.worker,
            clock=self._clock,
            patience=policy.state.socket_timeout,
            call=self._fleet.call if self._fleet is not None else None,
        )
        self._budgets = Budgets(self._quotas)
        # Context windows learned from model listings, by (provider, model) (see `learn_windows`).
        self._windows: dict[tuple[str, str], int] = {}
        self._install(policy)
        if policy.health.enabled:
            self._health = self._checker(policy)
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        self._background: list[asyncio.Task[None]] = []
        self._started = False
        self._joining: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()

    def _join(self, policy: Policy, store: StateStore | None) -> tuple[StateStore, Fleet | None]:
        """The state store the policy names (or `store`), and this worker's place in its fleet when shared."""
        backend = STORES[policy.state.backend]
        if store is None and not backend.shared:
            return backend.build(policy.state, self.worker, self._clock), None
        # A store given by the caller is taken as shared: it may serve several routers.
        store = store if store is not None else backend.build(policy.state, self.worker, self._clock)
        fleet = Fleet(
            store,
            self.worker,
            clock=self._clock,
            probe_lease=max(policy.health.timeout, 10.0),
            on_drain=self._drain_changed,
        )
        return store, fleet

    def _checker(self, policy: Policy) -> HealthChecker:
        return HealthChecker(
            self.store, self._runtimes, policy.health, clock=self._clock, worker=self.worker, emit=self._emit
        )

    def _install(self, policy: Policy, plan: Plan | None = None) -> None:
        """Compile (unless `plan` is given) and wire `policy`, then swap it in at once; until the swap
        nothing changes.

        Provider clients whose settings did not change are kept. A target that is still a model
        of the same provider keeps its breaker, limiter and history even when the provider's
        settings changed (it gets the new client); new `limits` get a new limiter, and a new
        `breaker` section is applied to the breaker it has (an open breaker stays open).
        Requests in flight finish on the plan they started with; a replaced client is closed
        once they can no longer use it (`_retire`).
        """
        plan = plan if plan is not None else compile_plan(policy, self.source)
        register_secrets(_secrets_of(policy))
        old = self._policy
        if old is not None and policy.state != old.state:
            issue = PolicyIssue(self.source, 0, 0, "state", "changing the state section needs a restart")
            raise PolicyError([issue])
        providers = self._clients(policy, old)
        runtimes = {
            name: self._reloaded(target, plan.providers[target.provider], providers[target.provider])
            for name, target in plan.targets.items()
        }
        self._apply_windows(runtimes, policy, old)
        engine = self._engine_for(plan, runtimes, policy, old)
        replaced = [p for name, p in self._providers.items() if providers.get(name) is not p]
        self._grace = max(self._grace, _longest_request(plan))
        # The swap: plain assignments, so a request sees either the old plan or the new one.
        self._policy, self.plan, self._providers, self._runtimes, self._engine = (
            policy, plan, providers, runtimes, engine
        )  # fmt: skip
        self._built_routes = set()
        for provider in replaced:
            self._retire(provider)
        if self._health is not None:
            self._health.retarget(runtimes, policy.health)
        self.version += 1

    def _clients(self, policy: Policy, old: Policy | None) -> dict[str, Provider]:
        """A client per provider: the current one where its settings did not change, else a new one."""
        kept = {
            name: provider
            for name, provider in self._providers.items()
            if old is not None and old.providers.get(name) == policy.providers.get(name)
        }
        fresh = {name: spec for name, spec in policy.providers.items() if name not in kept}
        return {**kept, **_build_providers(fresh, self._overrides, self.source, self._clock)}

    def _engine_for(
        self, plan: Plan, runtimes: Mapping[str, TargetRuntime], policy: Policy, old: Policy | None
    ) -> Engine:
        # The retry budget's window of past requests carries over unless its settings changed.
        same_budget = old is not None and old.retry_budget == policy.retry_budget
        engine = Engine(
            plan,
            runtimes,
            clock=self._clock,
            rng=self._rng,
            emit=self._emit,
            retry_budget=self._retry_budget if same_budget else None,
            budgets=self._budgets,
        )
        self._retry_budget = engine.retry_budget
        return engine

    @property
    def policy(self) -> Policy:
        assert self._policy is not None  # set by the constructor
        return self._policy

    def reload(self, policy: Policy | None = None) -> None:
        """Switch to `policy`, or to the policy file again; an invalid one is refused and the old stays.

        Raises `PolicyError` (file:line:column for every issue) when the new policy is refused, for
        whatever reason. The file is read, parsed and compiled on the calling thread: from async code,
        `await router.areload()`, which keeps the event loop serving meanwhile.
        """
        try:
            self._install(*_prepared(policy, self.source, self._overrides))
        except Exception as error:
            raise self._refused(error) from None
        self._accepted()

    async def areload(self, policy: Policy | None = None) -> None:
        """`reload` for async code: reading, parsing and compiling run on a worker thread, so that the
        loop goes on serving whatever the file holds; only the swap runs on the loop. Reloads run one
        at a time, in the order they were asked for.
        """
        async with self._reloading:
            try:
                prepared = await asyncio.to_thread(_prepared, policy, self.source, self._overrides)
                self._install(*prepared)
            except Exception as error:
                raise self._refused(error) from None
            self._accepted()

    def _refused(self, error: Exception) -> PolicyError:
        """A reload that failed, logged and announced: the old policy stays, and this is raised."""
        if isinstance(error, OSError):
            issue = PolicyIssue(self.source, 1, 1, "", f"cannot read the policy: {error.strerror or error}")
            error = PolicyError([issue])
        elif not isinstance(error, PolicyError):
            logger.error("policy reload failed", exc_info=error)
            issue = PolicyIssue(
                self.source, 1, 1, "", f"the policy could not be installed ({type(error).__name__})"
            )
            error = PolicyError([issue])
        logger.warning("policy reload refused; keeping version %d:\n%s", self.version, error)
        self._emit(ReloadEvent(self.source, False, self.version, tuple(map(str, error.issues))))
        return error

    def _accepted(self) -> None:
        logger.info("policy reloaded from %s: version %d", self.source, self.version)
        self._emit(ReloadEvent(self.source, True, self.version))

    async def watch(self) -> None:
        """Reload whenever the policy file changes, until cancelled (needs the `watch` extra).

        Survives anything: a save that does not load keeps the old policy (logged and announced), and
        the next good save is taken. The file's directory is watched, so that a save that replaces the
        file (as most editors do) is seen too.
        """
        from watchfiles import awatch  # type: ignore[import-not-found,unused-ignore]

        path = _absolute(self.source)
        failed: type[BaseException] | None = None
        while True:
            try:
                # The paths of changes are absolute, as the directory given is.
                async for changes in awatch(os.path.dirname(path)):
                    if any(changed == path for _, changed in changes):
                        with contextlib.suppress(PolicyError):  # logged and announced; the old policy serves
                            await self.areload()
            except Exception as error:
                # The watch itself failed (its directory went away, ...): say so once, then try again.
                if type(error) is not failed:
                    logger.exception("watching %s failed; trying again every second", self.source)
                failed = type(error)
                await self._clock.sleep(1.0)

    def reload_on_sighup(self) -> None:
        """Reload the policy file on SIGHUP (call from inside the running loop)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_quietly)

    def _reload_quietly(self) -> None:
        # A signal handler runs on the loop, which must not wait for a parse: the reload is a task.
        task = asyncio.get_running_loop().create_task(self._areload_quietly())
        _RELOADS.add(task)
        task.add_done_callback(_RELOADS.discard)

    async def _areload_quietly(self) -> None:
        with contextlib.suppress(PolicyError):  # logged and announced; the old policy serves
            await self.areload()

    def _emit(self, event: Event) -> None:
        hook = self._on_event
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            logger.exception("the on_event hook raised; the event is dropped")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        """A router on the policy file at `path`; `kwargs` as the constructor takes them.

        Raises `PolicyError` for every issue, each at its line: every API key and AWS credential
        that neither the file nor the environment gives is one, at its provider (as `router
        validate` reports them), unless that provider's client is among `providers`.
        """
        source = os.fspath(path)
        return cls(_load(source, kwargs.get("providers") or {}), source=source, **kwargs)

    def _runtime(self, target: TargetPlan, spec: ProviderSpec, provider: Provider) -> TargetRuntime:
        runtime = TargetRuntime(target, provider, self._breaker(target, spec), self._limiter(target, spec))
        self._all_runtimes.add(runtime)
        return runtime

    def _reloaded(self, target: TargetPlan, spec: ProviderSpec, provider: Provider) -> TargetRuntime:
        """`target`'s runtime under a new policy: carried over while it stays a model of the same provider."""
        previous = self._runtimes.get(target.name)
        if previous is None or previous.plan.provider != target.provider:
            return self._runtime(target, spec, provider)
        before = self.plan.providers[target.provider]
        breaker = previous.breaker
        if before.breaker != spec.breaker:
            breaker.reconfigure(spec.breaker.rule(), spec.breaker.success_threshold)
        limiter = previous.limiter if before.limits == spec.limits else self._limiter(target, spec)
        runtime = previous.carried_to(target, provider, breaker, limiter)
        self._all_runtimes.add(runtime)
        return runtime

    def _breaker(self, target: TargetPlan, spec: ProviderSpec) -> Breaker:
        breaker = Breaker(
            target.name,
            rule=spec.breaker.rule(),
            success_threshold=spec.breaker.success_threshold,
            clock=self._clock,
            rand=self._rng.random,
            on_transition=self._transition,
        )
        if self._fleet is not None:
            self._fleet.add(breaker)
        return breaker

    def _limiter(self, target: TargetPlan, spec: ProviderSpec) -> Limiter | None:
        limits = spec.limits
        if not (limits.rpm or limits.tpm or limits.max_concurrency):
            return None
        buckets = None
        if self._fleet is not None and (limits.rpm or limits.tpm):
            buckets = SharedBuckets(self._quotas, target.name, limits.rpm, limits.tpm)
        return Limiter(limits, self._clock, buckets)

    def _retire(self, provider: Provider) -> None:
        """Close a replaced client in the background once nothing can use it; shutdown closes any left."""
        self._retired.append(provider)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Reloaded from synchronous code: the calls run on the router's own loop, if it has one.
            if self._sync_loop is not None:
                self._sync_loop.call_soon_threadsafe(self._start_retirement, provider)
            return
        self._start_retirement(provider)

    def _start_retirement(self, provider: Provider) -> None:
        task = asyncio.get_running_loop().create_task(self._close_when_unused(provider))
        self._retiring[task] = provider
        task.add_done_callback(self._retiring.pop)

    async def _close_when_unused(self, provider: Provider) -> None:
        # A request begun on an older plan may still start a call on the client (a retry, a
        # failover) until its deadline; waiting for no call in progress alone would miss those.
        await self._clock.sleep(self._grace)
        # Calls begun by then end on their own (a stream lasts as long as its reader reads).
        while any(runtime.in_flight for runtime in self._all_runtimes if runtime.provider is provider):
            await self._clock.sleep(_RETIRE_POLL)
        self._retired.remove(provider)  # from here the close is this task's: shutdown waits for it
        try:
            await provider.aclose()
        except Exception:
            logger.exception("closing the replaced client of provider %s failed", provider.name)

    def _address(self, address: str) -> None:
        """Make `provider:model` a route of its own: that provider's breaker, limiter and client, no route."""
        provider, _, model = address.partition(":")
        if not model or provider not in self.plan.providers:
            return  # the engine reports the unknown route
        if len(self._runtimes) - len(self.plan.targets) >= _MAX_ADDRESSES:
            # Each address keeps a breaker and a limiter: callers naming new models without end would
            # grow the router without end.
            raise InvalidRequest(
                f"{_MAX_ADDRESSES} provider:model addresses are in use already; name a route or a target"
            )
        target = direct_target(provider, self.plan.providers[provider], model)
        runtime = self._runtimes[address] = self._runtime(
            target, self.plan.providers[provider], self._providers[provider]
        )
        self._engine.add_route(single_target_route(address, target), (runtime,))

    def _transition(self, event: BreakerTransition) -> None:
        logger.info("breaker %s: %s -> %s", event.target, event.old, event.new)
        if event.new == BreakerState.CLOSED:
            runtime = self._runtimes.get(event.target)
            if runtime is not None:
                runtime.recovered_at = event.at
        self._emit(event)

    # -- requests --------------------------------------------------------------------------

    async def complete(
        self,
        route: str,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        targets: Sequence[str] | None = None,
        attempts: int | None = None,
        max_cost: float | None = None,
        stream_recovery: StreamRecovery | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Completion:
        """One whole answer from the route's best available target.

        `route`: a route, an alias, or `provider:model` (a provider of the policy, the route defaults).
        For this call only (`router.control.Control`): `targets` names the candidates, in order (the
        route's or its rules' targets, or `provider:model` addresses), `attempts` the calls per target,
        `max_cost` a tighter cap in USD, `stream_recovery` overrides the route's; a bad value or an
        unknown route raises `InvalidRequest` before any call.
        `deadline` (seconds) shortens the route's total latency budget; `options` are provider
        options by their OpenAI names (tools, tool_choice, stop, response_format, top_p, seed, ...:
        `router.options.PROVIDER_OPTIONS`), which each wire translates; `extra_body` goes into the
        request body as given. Anything else, and the names the router owns (`model`, `stream`,
        `timeout`, `fallbacks`, ...), raise `TypeError` before any call is made. `metadata` is never
        sent: it picks the route's rule (`rules:`) and reaches the `on_event` hook with each attempt (e.g.
        a tenant or user for metrics).
        """
        options = checked_call(
            "complete", messages, max_tokens, temperature, metadata, deadline, options, extra_body
        )
        control = self._control(route, targets, attempts, max_cost, stream_recovery)
        request = _request(
            messages, max_tokens, temperature, options, streaming=False, metadata=metadata, control=control
        )
        await self._start_within(self.policy.state.socket_timeout)
        if route not in self._built_routes:
            await self._build(route)
        return await self._engine.complete(route, request, deadline)

    def stream(
        self,
        route: str,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        targets: Sequence[str] | None = None,
        attempts: int | None = None,
        max_cost: float | None = None,
        stream_recovery: StreamRecovery | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[str | StreamRestart | Completion]:
        """Text deltas as they arrive, then the final `Completion`; arguments as for `complete`.

        A stream that breaks after output began goes on as the route's `stream_recovery` says: by
        default a target that declares prefill continues the text (seamless: the deltas just go on),
        else the answer starts over on the next target, announced by a `StreamRestart` (clear what
        was shown) before the new answer's deltas.
        """
        options = checked_call(
            "stream", messages, max_tokens, temperature, metadata, deadline, options, extra_body
        )
        control = self._control(route, targets, attempts, max_cost, stream_recovery)
        request = _request(
            messages, max_tokens, temperature, options, streaming=True, metadata=metadata, control=control
        )
        if self._started and route in self._built_routes:
            return self._engine.stream(route, request, deadline)
        return self._stream_after_start(route, request, deadline)

    async def _stream_after_start(
        self, route: str, request: Request, deadline: float | None
    ) -> AsyncIterator[str | StreamRestart | Completion]:
        await self._start_within(self.policy.state.socket_timeout)
        await self._build(route)
        async with aclosing(self._engine.stream(route, request, deadline)) as items:
            async for item in items:
                yield item

    def _control(
        self,
        route: str,
        targets: Sequence[str] | None,
        attempts: int | None,
        max_cost: float | None,
        stream_recovery: StreamRecovery | None,
    ) -> Control | None:
        """The call's control, checked against its route, or None; an unknown route is refused here,
        before a stream is handed out."""
        if not self._engine.knows(route):
            self._address(route)
            if not self._engine.knows(route):
                known = ", ".join(sorted(self.plan.routes)) or "none"
                raise InvalidRequest(f"unknown route {route!r}; routes: {known}")
        if targets is None and attempts is None and max_cost is None and stream_recovery is None:
            return None
        control = Control(targets, None, attempts, max_cost, stream_recovery)
        if control.targets is not None:
            self._check_targets(route, control.targets)
        return control

    def _check_targets(self, route: str, targets: Sequence[str]) -> None:
        """Every name is one of the route's (or its rules') targets, or a `provider:model` address."""
        plan = self._engine.route(route)
        assert plan is not None  # see `_control`
        names = plan.names
        for name in targets:
            if name in names:
                continue
            provider, _, model = name.partition(":")
            if not model or provider not in self.plan.providers:
                raise InvalidRequest(
                    f"target {name!r} is not one of route {route!r}'s targets ({', '.join(sorted(names))}) "
                    "nor provider:model of one of the policy's providers"
                )
            if name not in self._runtimes:
                self._address(name)

    def complete_sync(
        self,
        route: str,
        messages: Sequence[Message],
        *,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        targets: Sequence[str] | None = None,
        attempts: int | None = None,
        max_cost: float | None = None,
        stream_recovery: StreamRecovery | None = None,
        **kwargs: Any,
    ) -> Completion:
        """`complete` for synchronous code; runs on the router's own event loop thread."""
        call = self.complete(
            route,
            messages,
            metadata=metadata,
            deadline=deadline,
            targets=targets,
            attempts=attempts,
            max_cost=max_cost,
            stream_recovery=stream_recovery,
            **kwargs,
        )
        return self._run_sync(call)

    def models(self) -> list[ModelEntry]:
        """Every name a request may give as its route: the routes, their aliases, and the targets'
        `provider:model` addresses (any model of a provider of the policy is one too)."""
        aliases = self.policy.aliases
        entries = [
            ModelEntry(name, "alias" if name in aliases else "route", tuple(t.name for t in plan.targets))
            for name, plan in self.plan.routes.items()
        ]
        addresses: dict[str, list[str]] = {}
        for target in self.plan.targets.values():
            addresses.setdefault(f"{target.provider}:{target.model}", []).append(target.name)
        return entries + [ModelEntry(a, "target", tuple(names)) for a, names in addresses.items()]

    def _run_sync(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        # One long-lived loop: the provider clients' connection pools belong to the loop that made them.
        if self._sync_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="router-sync", daemon=True)
            thread.start()
            self._sync_loop, self._sync_thread = loop, thread
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self._sync_loop)
        return future.result()

    def candidates(
        self, route: str, messages: Sequence[Message] = (), *, metadata: Mapping[str, Any] | None = None
    ) -> list[tuple[TargetPlan, str]]:
        """The route's targets in the order a request (with `metadata`, for the route's rules) would try
        them now, with breaker states."""
        route_plan = self.plan.routes.get(route)
        if route_plan is None:
            raise InvalidRequest(
                f"unknown route {route!r}; routes: {', '.join(sorted(self.plan.routes)) or 'none'}"
            )
        request = _request(
            messages or [{"role": "user", "content": ""}], None, None, {}, streaming=False, metadata=metadata
        )
        route_plan = shaped(route_plan, request, lambda name: self._runtimes[name].plan)
        runtimes = [self._runtimes[target.name] for target in route_plan.targets]
        ordered = order_candidates(route_plan, runtimes, request, self._rng, self._clock.monotonic())
        return [(r.plan, r.breaker.state) for r in ordered]

    async def learn_windows(self, *, within: float = 10.0) -> dict[str, int]:
        """Learn the context windows the policy does not declare from the model listings of the providers
        whose wire reports them (Anthropic's `max_input_tokens`): each becomes its target's window, checked
        as a declared one is (`explain` shows its source, `listing`), and stays across reloads that leave
        the window undeclared and the provider as it was. Returns the windows learned, by target; a
        listing that fails or takes longer than `within` seconds teaches nothing (logged)."""
        wanted: dict[str, list[TargetRuntime]] = {}
        for runtime in self._runtimes.values():
            if runtime.plan.context_window is None:
                wanted.setdefault(runtime.plan.provider, []).append(runtime)
        learned = {}
        for provider, runtimes in wanted.items():
            windows = await self._listed_windows(provider, within)
            for runtime in runtimes:
                window = windows.get(runtime.plan.model)
                if window is not None:
                    self._windows[(provider, runtime.plan.model)] = window
                    learned[runtime.plan.name] = window
        self._apply_windows(self._runtimes, self.policy, self.policy)
        return learned

    async def _listed_windows(self, provider: str, within: float) -> dict[str, int]:
        client = self._providers[provider]
        try:
            async with self._clock.timeout_at(self._clock.monotonic() + within):
                if isinstance(client, LazyProvider):
                    client = await client.client()
                listing = getattr(client, "context_windows", None)
                return {} if listing is None else dict(await listing())
        except Exception as error:  # a failed listing, a timeout: the windows stay unknown
            logger.warning("learning the context windows of %s failed (%s)", provider, type(error).__name__)
            return {}

    def _apply_windows(
        self, runtimes: Mapping[str, TargetRuntime], policy: Policy, old: Policy | None
    ) -> None:
        """Give each target without a declared window the one learned for its model, if any; forget what
        was learned from a provider whose settings changed."""
        if old is not None:
            kept = {key for key in self._windows if old.providers.get(key[0]) == policy.providers.get(key[0])}
            self._windows = {key: window for key, window in self._windows.items() if key in kept}
        for runtime in runtimes.values():
            plan = runtime.plan
            window = self._windows.get((plan.provider, plan.model))
            if window is not None and plan.context_window is None:
                runtime.plan = dataclasses.replace(plan, context_window=window, window_source="listing")

    async def list_models(self, provider: str, *, within: float = 10.0) -> list[str] | ProviderError:
        """The models a provider lists, or the typed error that stopped it (a cheap health probe)."""
        try:
            async with self._clock.timeout_at(self._clock.monotonic() + within):
                return await self._providers[provider].list_models()
        except TimeoutError:
            return ProviderError(ErrorKind.TIMEOUT, f"no answer within {within:g} s", provider=provider)
        except ProviderError as error:
            return error
        except Exception as error:  # an adapter's or a library's bug: a failed listing, not a traceback
            logger.warning("listing the models of %s failed", provider, exc_info=True)
            return ProviderError(
                ErrorKind.CONNECTION, f"the listing failed ({type(error).__name__})", provider=provider
            )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the fleet, start the health checker and build every provider's client (each on a thread of
        its own, the loop serving meanwhile). The first request joins and starts if you do not, and
        builds only the clients its route needs."""
        await self._start_within(None)
        await _built(self._providers.values())

    async def _start_within(self, seconds: float | None) -> None:
        """`start`, waiting for the fleet's join at most `seconds`: a store that does not answer
        costs a request no more than its socket timeout, and the join goes on in the background."""
        if not self._started:
            self._started = True
            if self._fleet is not None:
                self._joining = asyncio.get_running_loop().create_task(self._fleet.start())
                self._background.append(self._joining)
        joining = self._joining
        if joining is not None:
            if not joining.done():
                try:
                    async with asyncio.timeout(seconds):
                        await asyncio.shield(joining)
                except TimeoutError:
                    # No answer in time: limits and budgets go on their shares until it answers.
                    self._quotas.lost()
            self._joining = None  # later requests do not wait for it
        if self._health is not None and self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._probe_once_built(self._health))
            self._background.append(self._health_task)

    async def _build(self, route: str) -> None:
        """Build the clients of every provider `route` may call, each on a thread of its own
        (`router.providers.lazy`), before its request starts: an SDK's import is never counted against
        an attempt's timeout or a breaker, and the loop serves other routes meanwhile."""
        plan = self._engine.route(route)
        names = plan.names if plan is not None else ()
        await _built({self._runtimes[name].provider for name in names if name in self._runtimes})
        if plan is not None and self._engine.route(route) is plan:  # no reload meanwhile
            self._built_routes.add(route)

    async def _probe_once_built(self, checker: HealthChecker) -> None:
        # Probes probe every target: its clients are built first, outside the probes' timeouts.
        await _built(self._providers.values())
        await checker.run()

    async def check_health(self) -> None:
        """One round of probes (this worker's share of the fleet's), then the fleet's verdicts applied."""
        checker = self._health or self._checker(self.policy)
        await _built(self._providers.values())
        await checker.check_all()
        await checker.refresh()

    async def drain(self, target: str) -> None:
        """Take a target out of service for the whole fleet, until `restore`."""
        await self._set_drained(target, True)

    async def restore(self, target: str) -> None:
        await self._set_drained(target, False)

    async def _set_drained(self, target: str, drained: bool) -> None:
        runtime = self._runtimes.get(target)
        if runtime is None:
            raise RouterError(f"unknown target {target!r}; targets: {', '.join(self._runtimes)}")
        await self.store.set_drained(target, drained)
        runtime.drained = drained

    def _drain_changed(self, target: str, drained: bool) -> None:
        """The fleet drained or restored a target (any worker's `drain`, or the reconcile)."""
        runtime = self._runtimes.get(target)
        if runtime is not None:
            runtime.drained = drained

    async def status(self) -> list[TargetStatus]:
        """Every target as the fleet sees it: breaker, health, drain, calls in flight."""
        snapshot = await self.store.snapshot()
        breakers, drained = snapshot.breakers, snapshot.drained
        health = await self.store.health()
        rows = []
        for name, runtime in self._runtimes.items():
            fleet_breaker = breakers.get(name)
            verdict = health.get(name)
            judged = (
                Health.UNKNOWN if verdict is None else Health.HEALTHY if verdict.healthy else Health.UNHEALTHY
            )
            rows.append(
                TargetStatus(
                    target=name,
                    provider=runtime.plan.provider,
                    model=runtime.plan.model,
                    breaker=fleet_breaker.state if fleet_breaker else runtime.breaker.state,
                    generation=fleet_breaker.generation if fleet_breaker else runtime.breaker.generation,
                    health=judged,
                    last_probe_ago=verdict.checked_ago if verdict else None,
                    probe_detail=verdict.detail if verdict else "",
                    drained=name in drained,
                    in_flight=runtime.limiter.in_flight if runtime.limiter else 0,
                    leases=await self._leases_of(runtime.plan),
                )
            )
        return rows

    async def _leases_of(self, target: TargetPlan) -> dict[str, float]:
        """What the fleet's workers hold of each bucket the target's calls spend (see `router._quota`)."""
        leases = {}
        for bucket, (capacity, per_second) in buckets_of(
            self.plan, target, fleet_limits=self._fleet is not None
        ).items():
            grant = await self._quotas.outstanding(bucket, capacity, per_second)
            if grant is not None:
                leases[bucket.removesuffix(f":{target.name}")] = grant.outstanding
        return leases

    async def aclose(self) -> None:
        await self._shutdown()
        self._stop_sync_loop()

    def close(self) -> None:
        """Close from synchronous code (after `complete_sync`)."""
        if self._sync_loop is not None:
            self._run_sync(self._shutdown())
        self._stop_sync_loop()

    async def _shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await self._close_retired()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self._quotas.aclose()  # every lease goes back while the store is still open
        if self._fleet is not None:
            await self._fleet.aclose()
        else:
            await self.store.aclose()
        for provider in self._providers.values():
            await provider.aclose()

    async def _close_retired(self) -> None:
        """Close every replaced client now; a close already under way finishes instead."""
        for task, provider in self._retiring.items():
            if provider in self._retired:
                task.cancel()  # still waiting for quiet: closed below
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for provider in self._retired:
            await provider.aclose()
        self._retired.clear()

    def _stop_sync_loop(self) -> None:
        loop, thread = self._sync_loop, self._sync_thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._sync_loop = self._sync_thread = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _secrets_of(policy: Policy) -> list[str]:
    """Every secret value in the policy, for the log filter (`router.logs`): whichever fields of a
    provider hold secrets (keys, AWS credentials), its header values and base URL password, and the
    password of the state URL."""
    values = [
        secret.get_secret_value()
        for spec in policy.providers.values()
        for _, value in spec
        for secret in (value if isinstance(value, list) else [value])
        if isinstance(secret, SecretStr)
    ]
    values += [value for spec in policy.providers.values() for value in secrets_of(spec, None)]
    url = policy.state.url.get_secret_value() if policy.state.url else ""
    password = urllib.parse.urlsplit(url).password if url else None
    return [*values, *([password] if password else [])]


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _prepared(policy: Policy | None, source: str, given: Collection[str] = ()) -> tuple[Policy, Plan]:
    """The policy (read from `source` when not given) and its plan: the slow part of a reload, which
    touches nothing of the router's and so may run on any thread."""
    if policy is None:
        policy = _load(source, given)
    return policy, compile_plan(policy, source)


def _load(path: str, given: Collection[str]) -> Policy:
    """The policy file, with the credentials the environment lacks reported at their providers'
    lines (`router.providers.credentials`, as `router validate` does) rather than when a client is
    built, where no line is known; the providers whose clients are `given` need none."""
    if not given:
        return load_policy(path, environment=True)
    policy = load_policy(path)
    if not any(
        missing_credentials(spec, os.environ) for name, spec in policy.providers.items() if name not in given
    ):
        return policy
    # Read again, for the located issues: the file is valid, so each of them is a credential.
    try:
        return load_policy(path, environment=True)
    except PolicyError as error:
        mine = [dotted(("providers", name)) for name in given]
        issues = [
            issue
            for issue in error.issues
            if not any(issue.path == prefix or issue.path.startswith(prefix + ".") for prefix in mine)
        ]
        raise PolicyError(issues or error.issues) from None


def _longest_request(plan: Plan) -> float:
    """How long a request on `plan` may go on starting calls: the longest total budget of its routes
    (a direct `provider:model` call has the default one)."""
    return max([LatencyBudget().total, *(route.total for route in plan.routes.values())])


def _request(
    messages: Sequence[Message],
    max_tokens: int | None,
    temperature: float | None,
    options: Mapping[str, Any],
    *,
    streaming: bool,
    metadata: Mapping[str, Any] | None = None,
    control: Control | None = None,
) -> Request:
    if not messages:
        raise RouterError("messages must not be empty")
    tokens = estimate_tokens(messages)
    return Request(messages, max_tokens, temperature, options, tokens, streaming, metadata, control)


def _build_providers(
    specs: Mapping[str, ProviderSpec], overrides: Mapping[str, Provider], source: str, clock: Clock
) -> dict[str, Provider]:
    """Each provider's client as given in `overrides`, else built on its first call; a missing key fails
    now, at load time."""
    return {
        name: overrides[name]
        if name in overrides
        else on_first_call(name, spec, clock=clock, environ=os.environ, source=source)
        for name, spec in specs.items()
    }


async def _built(providers: Collection[Provider]) -> None:
    """Wait until every client among `providers` that is built on first call is built (in parallel),
    and pybreaker is imported (`warm_breakers`)."""
    waits = [provider.ready() for provider in providers if isinstance(provider, LazyProvider)]
    if not breakers_warmed():
        waits.append(asyncio.to_thread(warm_breakers))
    if waits:
        await asyncio.gather(*waits)
