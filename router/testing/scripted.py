"""An in-process provider that plays a script: answers, errors, delays, broken streams.

It waits on the clock it is given, so with a `FakeClock` a script of timeouts and backoffs
runs in virtual time. Pass it to `Router(policy, providers={"name": provider})`.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from router.clock import Clock, SystemClock
from router.errors import ErrorKind, ProviderError
from router.providers.base import Call, Chunk, Reply
from router.results import Usage

__all__ = ["ScriptedProvider", "Step"]

_FOREVER = 1e9


@dataclass(frozen=True, slots=True)
class Step:
    """What one call does. Build with `Step.reply`, `Step.fail` or `Step.hang`."""

    text: str = "ok"
    delay: float = 0.0
    error: ErrorKind | None = None
    status: int | None = None
    retry_after: float | None = None
    message: str = "scripted failure"
    # Streams: the text goes out a word per chunk, `chunk_delay` apart.
    chunk_delay: float = 0.0
    cut_after: int | None = None  # end without a finish reason after this many chunks
    stall_after: int | None = None  # go silent (forever) after this many chunks
    malformed_after: int | None = None  # one unreadable event after this many chunks
    fail_after: int | None = None  # raise `error` after this many chunks
    finish_reason: str | None = "stop"

    @classmethod
    def reply(
        cls,
        text: str = "ok",
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        cut_after: int | None = None,
        stall_after: int | None = None,
        malformed_after: int | None = None,
        finish_reason: str | None = "stop",
    ) -> Step:
        return cls(
            text=text,
            delay=delay,
            chunk_delay=chunk_delay,
            cut_after=cut_after,
            stall_after=stall_after,
            malformed_after=malformed_after,
            finish_reason=finish_reason,
        )

    @classmethod
    def fail(
        cls,
        kind: ErrorKind,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        message: str = "scripted failure",
        text: str = "ok",
        after_chunks: int | None = None,
    ) -> Step:
        """Fail at once, or (streams) after `after_chunks` chunks of `text`."""
        return cls(
            error=kind,
            status=status,
            retry_after=retry_after,
            delay=delay,
            message=message,
            text=text,
            fail_after=after_chunks,
        )

    @classmethod
    def hang(cls) -> Step:
        return cls(delay=_FOREVER)


class ScriptedProvider:
    """Plays scripted steps per model, in order; once a model's script runs out, it answers `default`."""

    def __init__(
        self, name: str = "scripted", *, clock: Clock | None = None, default: Step | None = None
    ) -> None:
        self.name = name
        self._clock = clock or SystemClock()
        self._default = default or Step()
        self._scripts: defaultdict[str, deque[Step]] = defaultdict(deque)
        self.calls: list[Call] = []
        self._listing: deque[Step] = deque()
        self.listings = 0
        self.closed = False

    def script(self, model: str, *steps: Step) -> None:
        self._scripts[model].extend(steps)

    def count(self, model: str | None = None) -> int:
        return sum(1 for call in self.calls if model is None or call.model == model)

    def _next(self, call: Call) -> Step:
        self.calls.append(call)
        script = self._scripts.get(call.model)
        return script.popleft() if script else self._default

    def _error(self, step: Step) -> ProviderError:
        assert step.error is not None
        return ProviderError(
            step.error, step.message, provider=self.name, status=step.status, retry_after=step.retry_after
        )

    @staticmethod
    def _usage(call: Call, text: str) -> Usage:
        prompt = sum(len(str(message.get("content", ""))) for message in call.messages)
        return Usage(prompt // 4 + 1, len(text) // 4 + 1)

    async def complete(self, call: Call) -> Reply:
        step = self._next(call)
        if step.delay:
            await self._clock.sleep(step.delay)
        if step.error is not None:
            raise self._error(step)
        return Reply(step.text, self._usage(call, step.text), step.finish_reason)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        step = self._next(call)
        if step.delay:
            await self._clock.sleep(step.delay)
        if step.error is not None and step.fail_after is None:
            raise self._error(step)
        words = step.text.split(" ")
        pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
        for sent, piece in enumerate(pieces):
            if sent == step.cut_after:
                return
            if sent == step.fail_after:
                raise self._error(step)
            if sent == step.stall_after:
                await self._clock.sleep(_FOREVER)
            if sent == step.malformed_after:
                yield Chunk(warning="skipped a malformed stream event (scripted)")
            if sent and step.chunk_delay:
                await self._clock.sleep(step.chunk_delay)
            yield Chunk(text=piece)
        yield Chunk(finish_reason=step.finish_reason, usage=self._usage(call, step.text))

    def script_listing(self, *steps: Step) -> None:
        """What the next `list_models` calls do (a failing step fails the listing, e.g. a health probe)."""
        self._listing.extend(steps)

    async def list_models(self) -> list[str]:
        self.listings += 1
        step = self._listing.popleft() if self._listing else self._default
        if step.delay:
            await self._clock.sleep(step.delay)
        if step.error is not None:
            raise self._error(step)
        return sorted({call.model for call in self.calls} | set(self._scripts))

    async def aclose(self) -> None:
        self.closed = True
