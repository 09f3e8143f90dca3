"""`Router`: a compiled policy with a live client, breaker and limiter per target."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from router.clock import Clock, SystemClock
from router.engine import Engine
from router.errors import ErrorKind, PolicyError, PolicyIssue, ProviderError, RouterError
from router.policy.compile import TargetPlan, compile_plan, single_target_route
from router.policy.loader import load_policy
from router.policy.model import Policy
from router.providers import Provider, build_provider
from router.providers.base import Message
from router.resilience.breaker import Breaker, BreakerTransition
from router.resilience.limiter import Limiter
from router.results import Completion
from router.selection import Request, TargetRuntime, estimate_tokens, order_candidates

__all__ = ["Router"]

logger = logging.getLogger("router")
_T = TypeVar("_T")


class Router:
    """Routes completions by a policy: `await router.complete("chat", messages)`.

    `providers` replaces the client of a named provider (for tests and in-process fakes);
    `clock` and `seed` make timing and random choices reproducible.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        source: str = "<policy>",
        clock: Clock | None = None,
        providers: Mapping[str, Provider] | None = None,
        seed: int | None = None,
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self.policy = policy
        self.plan = compile_plan(policy, source)
        self._clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._on_transition = on_transition
        self._providers = _build_providers(policy, providers or {}, source, self._clock)
        self._runtimes = {name: self._runtime(target) for name, target in self.plan.targets.items()}
        self._engine = Engine(self.plan, self._runtimes, clock=self._clock, rng=self._rng)
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        return cls(load_policy(path), source=os.fspath(path), **kwargs)

    def _runtime(self, target: TargetPlan) -> TargetRuntime:
        spec = self.plan.providers[target.provider]
        breaker = Breaker(
            target.name,
            fail_max=spec.breaker.fail_max,
            reset_timeout=spec.breaker.reset_timeout,
            max_reset_timeout=spec.breaker.max_reset_timeout,
            success_threshold=spec.breaker.success_threshold,
            clock=self._clock,
            rand=self._rng.random,
            on_transition=self._transition,
        )
        limits = spec.limits
        limiter = (
            Limiter(limits, self._clock) if (limits.rpm or limits.tpm or limits.max_concurrency) else None
        )
        return TargetRuntime(target, self._providers[target.provider], breaker, limiter)

    def _address(self, address: str) -> None:
        """Make `provider:model` a route of its own: that provider's breaker, limiter and client, no route."""
        provider, _, model = address.partition(":")
        if not model or provider not in self.plan.providers:
            return  # the engine reports the unknown route
        # Nothing is declared about the model: no price, no window, no capability filtered out.
        target = TargetPlan(address, provider, model, 0.0, 0.0, None, True, True, True, "direct")
        runtime = self._runtimes[address] = self._runtime(target)
        self._engine.add_route(single_target_route(address, target), (runtime,))

    def _transition(self, event: BreakerTransition) -> None:
        logger.info("breaker %s: %s -> %s", event.target, event.old, event.new)
        if self._on_transition is not None:
            self._on_transition(event)

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
        **options: Any,
    ) -> Completion:
        """One whole answer from the route's best available target.

        `deadline` (seconds) shortens the route's total latency budget; `options` (stop, tools,
        response_format, ...) go to the provider as they are; `metadata` stays local.
        """
        request = _request(messages, max_tokens, temperature, options, streaming=False)
        if not self._engine.knows(route):
            self._address(route)
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
        **options: Any,
    ) -> AsyncIterator[str | Completion]:
        """Text deltas as they arrive, then the final `Completion`."""
        request = _request(messages, max_tokens, temperature, options, streaming=True)
        if not self._engine.knows(route):
            self._address(route)
        return self._engine.stream(route, request, deadline)

    def complete_sync(self, route: str, messages: Sequence[Message], **kwargs: Any) -> Completion:
        """`complete` for synchronous code; runs on the router's own event loop thread."""
        return self._run_sync(self.complete(route, messages, **kwargs))

    def _run_sync(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        # One long-lived loop: the provider clients' connection pools belong to the loop that made them.
        if self._sync_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="router-sync", daemon=True)
            thread.start()
            self._sync_loop, self._sync_thread = loop, thread
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self._sync_loop)
        return future.result()

    def candidates(self, route: str, messages: Sequence[Message] = ()) -> list[tuple[TargetPlan, str]]:
        """The route's targets in the order a request would try them now, with breaker states."""
        route_plan = self.plan.routes.get(route)
        if route_plan is None:
            raise RouterError(
                f"unknown route {route!r}; routes: {', '.join(sorted(self.plan.routes)) or 'none'}"
            )
        request = _request(messages or [{"role": "user", "content": ""}], None, None, {}, streaming=False)
        runtimes = [self._runtimes[target.name] for target in route_plan.targets]
        return [(r.plan, r.breaker.state) for r in order_candidates(route_plan, runtimes, request, self._rng)]

    async def list_models(self, provider: str, *, within: float = 10.0) -> list[str] | ProviderError:
        """The models a provider lists, or the typed error that stopped it (a cheap health probe)."""
        try:
            async with self._clock.timeout_at(self._clock.monotonic() + within):
                return await self._providers[provider].list_models()
        except TimeoutError:
            return ProviderError(ErrorKind.TIMEOUT, f"no answer within {within:g} s", provider=provider)
        except ProviderError as error:
            return error

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._stop_sync_loop()

    def close(self) -> None:
        """Close from synchronous code (after `complete_sync`)."""
        if self._sync_loop is not None:
            self._run_sync(self._close_providers())
        self._stop_sync_loop()

    async def _close_providers(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

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


def _request(
    messages: Sequence[Message],
    max_tokens: int | None,
    temperature: float | None,
    options: Mapping[str, Any],
    *,
    streaming: bool,
) -> Request:
    if not messages:
        raise RouterError("messages must not be empty")
    return Request(messages, max_tokens, temperature, options, estimate_tokens(messages), streaming)


def _build_providers(
    policy: Policy, overrides: Mapping[str, Provider], source: str, clock: Clock
) -> dict[str, Provider]:
    unknown = sorted(set(overrides) - set(policy.providers))
    if unknown:
        raise RouterError(f"providers given for names the policy does not define: {', '.join(unknown)}")
    built: dict[str, Provider] = {}
    for name, spec in policy.providers.items():
        if name in overrides:
            built[name] = overrides[name]
            continue
        try:
            built[name] = build_provider(name, spec, clock=clock, environ=os.environ, source=source)
        except PolicyError:
            raise
        except Exception as error:
            # The SDK's message may quote the configuration; name the field instead.
            raise PolicyError(
                [
                    PolicyIssue(
                        source,
                        0,
                        0,
                        f"providers.{name}",
                        f"cannot build the {spec.type} client ({type(error).__name__}); "
                        "check api_key and base_url",
                    )
                ]
            ) from None
    return built
