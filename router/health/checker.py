"""One prober per target per interval across the fleet; every worker reads the verdicts.

A target that served real traffic within the last interval is not probed: that traffic's last
outcome is its verdict (passive health). Otherwise the worker that wins the target's lease for
the interval probes it. The probe (`health.probe`) is a models listing, the cheapest call that
proves the service and the key work, or a one-token completion on the target's own model, the
only probe that proves chat works. `auto` spends the token only during an outage (the breaker
not closed, or health unhealthy), so recovery is tested on the path that failed; a completion
probe that answers closes the breaker, and selection lets a target whose breaker closed after
its unhealthy verdict back in. Verdicts expire: a stale one is "unknown", never "healthy".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from router.clock import Clock
from router.errors import ProviderError
from router.events import HealthEvent
from router.policy.model import HealthSpec
from router.providers.base import Call
from router.resilience.breaker import BreakerState
from router.resilience.runtime import Health, TargetRuntime
from router.state.base import HealthRecord, StateStore, StoreUnavailable

__all__ = ["HealthChecker"]

logger = logging.getLogger("router")

# The verdict of a completion probe that answered: chat works, which no other verdict proves.
_ANSWERED = "completion probe ok"


class HealthChecker:
    def __init__(
        self,
        store: StateStore,
        runtimes: Mapping[str, TargetRuntime],
        spec: HealthSpec,
        *,
        clock: Clock,
        worker: str,
        emit: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._worker = worker
        self._emit = emit
        self._checked_at: dict[str, float] = {}
        self.retarget(runtimes, spec)

    def retarget(self, runtimes: Mapping[str, TargetRuntime], spec: HealthSpec) -> None:
        """Follow a reloaded policy's targets and settings."""
        self._runtimes = runtimes
        self._spec = spec
        self._ttl = spec.ttl if spec.ttl is not None else 3 * spec.interval

    async def run(self) -> None:
        """Check and refresh every interval, until cancelled; whatever fails, the next round comes."""
        failed: type[BaseException] | None = None
        while True:
            try:
                await self.check_all()
                await self.refresh()
                failed = None
            except StoreUnavailable:
                pass  # the breakers still protect every call; verdicts resume with the store
            except Exception as error:
                if type(error) is not failed:  # once while it goes on failing the same way
                    logger.exception("a round of health checks failed; the next comes in an interval")
                failed = type(error)
            await self._clock.sleep(self._spec.interval)

    async def check_all(self) -> None:
        """One round of probes; one target's failure is logged and leaves the others' verdicts be."""
        runtimes = list(self._runtimes.values())
        outcomes = await asyncio.gather(
            *(self._check(runtime) for runtime in runtimes), return_exceptions=True
        )
        for runtime, outcome in zip(runtimes, outcomes, strict=True):
            if isinstance(outcome, StoreUnavailable):
                raise outcome
            if isinstance(outcome, Exception):
                logger.warning(
                    "checking the health of %s failed (%s)", runtime.plan.name, type(outcome).__name__
                )
            elif isinstance(outcome, BaseException):
                raise outcome  # a cancellation

    async def _check(self, runtime: TargetRuntime) -> None:
        name = runtime.plan.name
        now = self._clock.monotonic()
        checked = self._checked_at.get(name)
        if checked is not None and now - checked < self._spec.interval:
            return  # this worker already gave its verdict this interval
        self._checked_at[name] = now
        kind = self._kind(runtime)
        seen = runtime.last_outcome_at
        # A failed call is old news to a completion probe, which can see the target healed since.
        if seen is not None and now - seen < self._spec.interval and (runtime.last_ok or kind == "models"):
            healthy, detail = runtime.last_ok, "passive"
        elif await self._store.take_lease(f"health:{name}", self._worker, self._spec.interval * 0.9):
            healthy, detail = await self._probe(runtime, kind)
        else:
            return  # another worker probes it this interval
        await self._store.record_probe(name, healthy, detail, self._ttl)

    def _kind(self, runtime: TargetRuntime) -> str:
        """The probe for this target now: `auto` pays for a completion only while it is out."""
        kind = self._spec.probe
        if kind != "auto":
            return kind
        out = runtime.breaker.state != BreakerState.CLOSED or runtime.health == Health.UNHEALTHY
        return "completion" if out else "models"

    async def _probe(self, runtime: TargetRuntime, kind: str) -> tuple[bool, str]:
        runtime.in_flight += 1  # a call on the client like any other: a replaced client waits for it
        try:
            async with self._clock.timeout_at(self._clock.monotonic() + self._spec.timeout):
                if kind == "completion":
                    await runtime.provider.complete(_ping(runtime.plan.model, self._spec.timeout))
                else:
                    await runtime.provider.list_models()
        except TimeoutError:
            return False, f"{kind} probe timed out"
        except ProviderError as error:
            return False, f"{kind} probe failed: {error.kind}"
        except Exception as error:  # an adapter's bug must fail the probe, not stop the checker
            return False, f"{kind} probe failed: {type(error).__name__}"
        finally:
            runtime.in_flight -= 1
        if kind == "completion":
            runtime.breaker.recover()  # chat works: every worker may send traffic again
            return True, _ANSWERED
        return True, "models probe ok"

    async def refresh(self) -> None:
        """Apply the fleet's verdicts and drains to this worker's targets."""
        records = await self._store.health()
        drained = await self._store.drained()
        now = self._clock.monotonic()
        for name, runtime in self._runtimes.items():
            runtime.drained = name in drained
            self._apply(runtime, records.get(name), now)

    def _apply(self, runtime: TargetRuntime, record: HealthRecord | None, now: float) -> None:
        previous = runtime.health
        runtime.health = self._verdict(previous, record)
        runtime.health_streak = record.streak if record is not None else 0
        if runtime.health == previous:
            return
        # Dated by the last probe behind it, so a breaker that closed after that probe overrules it.
        runtime.health_since = now - record.checked_ago if record is not None else now
        if record is None:
            return  # expired: nothing new was learnt about the target
        if previous == Health.UNHEALTHY and runtime.health == Health.HEALTHY:
            runtime.recovered_at = now - record.since
        name, health = runtime.plan.name, runtime.health
        logger.info("target %s: %s -> %s (%s)", name, previous, health, record.detail)
        if self._emit is not None:
            self._emit(HealthEvent(name, previous, health, record.detail))

    def _verdict(self, previous: Health, record: HealthRecord | None) -> Health:
        if record is None:
            return Health.UNKNOWN
        # Hysteresis: a verdict flips only after enough probes agree, or one chat call answered.
        if record.healthy and (record.streak >= self._spec.healthy_after or record.detail == _ANSWERED):
            return Health.HEALTHY
        if not record.healthy and record.streak >= self._spec.unhealthy_after:
            return Health.UNHEALTHY
        if previous == Health.UNKNOWN:
            return Health.HEALTHY if record.healthy else Health.UNKNOWN
        return previous


def _ping(model: str, timeout: float) -> Call:
    """The cheapest chat call: one token out."""
    ping = [{"role": "user", "content": "ping"}]
    return Call(model, ping, timeout, max_tokens=1, temperature=None, options={})
