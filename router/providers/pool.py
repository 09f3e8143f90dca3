"""A key pool: one provider client per API key, used round-robin.

A 429 on one key moves the call to the next key (the key rests for its Retry-After, at most
the provider's longest breaker wait) before the engine ever sees a failure; a 401/403 benches
the key for good while the others serve.
Keys are named in logs and errors by a short hash, never by their value.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from router.clock import Clock
from router.errors import ErrorKind, ProviderError
from router.providers.base import Call, Chunk, Provider, Reply

__all__ = ["KeyPool", "key_id"]

logger = logging.getLogger("router")

_DEFAULT_REST = 1.0  # seconds a rate-limited key rests when the provider names no delay
_T = TypeVar("_T")


def key_id(key: str) -> str:
    """A stable, harmless name for a key: `key#` and 8 hex digits of its SHA-256."""
    return "key#" + hashlib.sha256(key.encode()).hexdigest()[:8]


class _Member:
    __slots__ = ("benched", "id", "provider", "rest_until")

    def __init__(self, key: str, provider: Provider) -> None:
        self.id = key_id(key)
        self.provider = provider
        self.rest_until = 0.0
        self.benched = False


class KeyPool:
    def __init__(
        self,
        name: str,
        members: Sequence[tuple[str, Provider]],
        clock: Clock,
        *,
        max_rest: float,
    ) -> None:
        self.name = name
        self._members = [_Member(key, provider) for key, provider in members]
        self._clock = clock
        self._max_rest = max_rest
        self._next = 0

    @property
    def key_states(self) -> dict[str, str]:
        """Each key's state by its short id: serving, resting or benched."""
        now = self._clock.monotonic()
        return {
            m.id: "benched" if m.benched else "resting" if m.rest_until > now else "serving"
            for m in self._members
        }

    def _pick(self, tried: set[int]) -> _Member | None:
        now = self._clock.monotonic()
        count = len(self._members)
        for step in range(count):
            index = (self._next + step) % count
            member = self._members[index]
            if index not in tried and not member.benched and member.rest_until <= now:
                self._next = index + 1
                tried.add(index)
                return member
        return None

    def _absorb(self, member: _Member, error: ProviderError) -> bool:
        """Note what the error says about the key; True when another key may do better."""
        if error.kind is ErrorKind.RATE_LIMITED:
            # A key rests no longer than an open breaker waits: a huge Retry-After would lose it for days.
            rest = min(error.retry_after or _DEFAULT_REST, self._max_rest)
            member.rest_until = self._clock.monotonic() + rest
            return True
        if error.kind is ErrorKind.AUTH and error.status in (401, 403):
            member.benched = True
            logger.warning("provider %s: %s rejected (HTTP %s); benched", self.name, member.id, error.status)
            return True
        return False

    def _exhausted(self, last: ProviderError | None) -> ProviderError:
        if last is not None:
            return last
        states = ", ".join(f"{key} {state}" for key, state in self.key_states.items())
        kind = ErrorKind.AUTH if all(m.benched for m in self._members) else ErrorKind.RATE_LIMITED
        return ProviderError(kind, f"no key can serve now ({states})", provider=self.name)

    async def _each_key(self, attempt: Callable[[Provider], Awaitable[_T]]) -> _T:
        tried: set[int] = set()
        last: ProviderError | None = None
        while (member := self._pick(tried)) is not None:
            try:
                return await attempt(member.provider)
            except ProviderError as error:
                if not self._absorb(member, error):
                    raise
                last = error
        raise self._exhausted(last)

    async def complete(self, call: Call) -> Reply:
        return await self._each_key(lambda provider: provider.complete(call))

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        # A key may be swapped only until the first chunk: after that the answer has begun.
        async def first_chunk(provider: Provider) -> tuple[AsyncIterator[Chunk], Chunk | None]:
            chunks = provider.stream(call)
            try:
                return chunks, await anext(chunks)
            except StopAsyncIteration:
                return chunks, None
            except BaseException:  # an error or a cancellation: nobody else will close it
                await _close(chunks)
                raise

        chunks, first = await self._each_key(first_chunk)
        try:
            if first is None:
                return
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await _close(chunks)

    async def list_models(self) -> list[str]:
        return await self._each_key(lambda provider: provider.list_models())

    async def aclose(self) -> None:
        for member in self._members:
            await member.provider.aclose()


async def _close(chunks: AsyncIterator[Chunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
