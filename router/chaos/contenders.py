"""What a chaos load is sent through: our `Router`, or (in `litellm_router`) LiteLLM's.

`build_contender` makes either from a policy already pinned to the fake upstream. Every
answer is checked word for word against what the upstream sent: a stream cut short that
reaches the caller as a success is a lost request too (`wrong_answer`).
"""

from __future__ import annotations

from collections.abc import Mapping

from router._router import Router
from router.chaos.load import Answer, Contender, Sink
from router.chaos.recording import TransitionEvent
from router.chaos.scenario import Load
from router.chaos.upstream import reply_for
from router.clock import Clock
from router.errors import AllTargetsFailed, ProviderError, RouterError
from router.events import Event
from router.policy.model import Policy
from router.providers.base import Message, Provider
from router.resilience.breaker import BreakerTransition
from router.results import Attempt, Completion, StreamRestart
from router.state.base import StateStore

__all__ = ["CONTENDERS", "RouterContender", "build_contender"]

CONTENDERS = ("router", "litellm")


class RouterContender:
    """Requests through `router.Router`; its breaker transitions go to the sink as they happen.

    `clock`, `providers` and `store` go to the `Router` (a simulation runs it in virtual time,
    on in-process providers); the load's origin must be on the same clock.
    """

    name = "router"

    def __init__(
        self,
        policy: Policy,
        *,
        sink: Sink,
        worker: int = 0,
        seed: int = 0,
        clock: Clock | None = None,
        providers: Mapping[str, Provider] | None = None,
        store: StateStore | None = None,
    ) -> None:
        self._sink = sink
        self._worker = worker
        self.origin = 0.0  # set by the load when it starts; transitions count from it
        self.router = Router(
            policy,
            seed=seed + worker,
            worker=f"chaos-{worker}",
            on_event=self._event,
            clock=clock,
            providers=providers,
            store=store,
        )

    def _event(self, event: Event) -> None:
        if not isinstance(event, BreakerTransition):
            return
        # The breaker stamps transitions on the router's clock, which the load's origin is on.
        at = event.at - self.origin
        self._sink.transition(TransitionEvent(self._worker, at, event.target, event.old, event.new))

    async def start(self) -> None:
        await self.router.start()

    async def send(self, load: Load) -> Answer:
        messages: list[Message] = [{"role": "user", "content": load.prompt}]
        restarted = False
        try:
            if load.stream:
                text, completion, restarted = await self._read_stream(load, messages)
            else:
                completion = await self.router.complete(load.route, messages, max_tokens=load.max_tokens)
                text = completion.text
        except AllTargetsFailed as error:
            return Answer(None, "all_targets_failed", attempts=_trail(error.attempts))
        except ProviderError as error:
            return Answer(None, str(error.kind), attempts=_trail(error.attempts))
        except RouterError as error:
            return Answer(None, type(error).__name__)
        trail = _trail(completion.attempts)
        # A continued answer is the reply of the model that began it: the fake upstream continues
        # a prefill with the rest of the reply it begins.
        began = next((a.model for a in completion.attempts if reply_for(a.model) == text), None)
        if began is None:
            return Answer(None, "wrong_answer", attempts=trail)
        recovery = "restarted" if restarted else "continued" if began != completion.model else None
        return Answer(completion.target, None, completion.cost_usd, trail, recovery)

    async def _read_stream(self, load: Load, messages: list[Message]) -> tuple[str, Completion, bool]:
        """The text as the caller keeps it, delta by delta, the final Completion, and whether the
        answer started over (a `StreamRestart`)."""
        parts: list[str] = []
        restarted = False
        items = self.router.stream(load.route, messages, max_tokens=load.max_tokens)
        try:
            async for item in items:
                if isinstance(item, Completion):
                    return "".join(parts), item, restarted
                if isinstance(item, StreamRestart):
                    parts.clear()  # as a UI clears what it showed: the new answer replaces it
                    restarted = True
                else:
                    parts.append(item)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:  # cancelled mid-stream: close it here, not in the garbage collector
                await aclose()
        raise AssertionError("a stream always ends with its Completion")

    async def status(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        rows = await self.router.status()
        return tuple((row.target, row.breaker) for row in rows), tuple(
            (row.target, row.health) for row in rows
        )

    async def aclose(self) -> None:
        await self.router.aclose()


def _trail(attempts: tuple[Attempt, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((attempt.target, attempt.outcome) for attempt in attempts)


def build_contender(
    kind: str,
    policy: Policy,
    *,
    route: str,
    sink: Sink,
    worker: int = 0,
    seed: int = 0,
) -> Contender:
    """`kind` is "router" or "litellm" (which needs the `bench` extra: ImportError without it)."""
    if kind == "router":
        return RouterContender(policy, sink=sink, worker=worker, seed=seed)
    if kind == "litellm":
        from router.chaos.litellm_router import LiteLLMContender

        return LiteLLMContender(policy, route=route)
    raise ValueError(f"unknown contender {kind!r}; known: {', '.join(CONTENDERS)}")
