"""A provider's client built when a call first needs it, not when the policy loads.

Building a client imports its SDK (about a second for `anthropic` on a small machine) and the
adapter: `router explain`, `router status` and a router whose requests never reach a provider do
not pay for it. The credentials are still checked when the policy loads (`provider_keys`), so a
missing key fails there, at its provider's line, as before.

The build runs on a thread of its own, never on the event loop: while one route's first request
waits for its SDK, the loop goes on serving the others. A plain thread rather than the loop's
executor, so that one build serves every loop the router is used from (`complete_sync` has its own).
Builds are always awaited (by the request that needs them, or by `Router.start()`, which builds
every client), never left running in the background: a build still under way when a fleet test
(or a pre-forking server) forks would leave the child a module whose import lock is held by a
thread it does not have, and its first import of that SDK would hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from router.errors import ErrorKind, ProviderError
from router.providers import client_with_keys, provider_keys
from router.providers.base import Call, Chunk, Provider, Reply

if TYPE_CHECKING:
    from collections.abc import Mapping

    from router.clock import Clock
    from router.policy.model import ProviderSpec

__all__ = ["LazyProvider", "on_first_call"]

logger = logging.getLogger("router")


def on_first_call(
    name: str, spec: ProviderSpec, *, clock: Clock, environ: Mapping[str, str], source: str = "<policy>"
) -> LazyProvider:
    """The provider `name` of the policy, its client built on its first call; its credentials are
    checked now (a `PolicyError` naming the variable to set)."""
    keys = provider_keys(name, spec, environ=environ, source=source)
    return LazyProvider(name, spec.type, lambda: client_with_keys(name, spec, keys, clock))


class LazyProvider:
    """A `Provider` that builds the real client (`build()`) on a thread when a call first needs it.

    Calls that arrive while it is being built wait for the same build. A build that fails (an SDK
    that is not installed, settings the SDK refuses) is a `ProviderError` of kind `auth` for every
    call (the SDK's message may quote the configuration, so only the error's type is named); it is
    not tried again, as nothing that would change its outcome can change before the policy does.
    """

    def __init__(self, name: str, kind: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self._kind = kind
        self._build = build
        self._lock = threading.Lock()
        self._building: Future[Provider] | None = None
        self.built: Provider | None = None  # the client, once a call has needed it

    def __repr__(self) -> str:
        return f"LazyProvider({self.name!r}, {self._kind!r}, built={self.built is not None})"

    async def ready(self) -> None:
        """Wait until the client is built (starting its build if need be); a failed build is not raised
        here but by the calls that need the client."""
        if self.built is None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._started())

    async def client(self) -> Provider:
        """The built client, waiting for its build if need be."""
        built = self.built
        if built is not None:
            return built
        try:
            return await asyncio.wrap_future(self._started())
        except Exception as error:
            raise ProviderError(
                ErrorKind.AUTH,
                f"cannot build the {self._kind} client ({type(error).__name__}); check api_key and base_url",
                provider=self.name,
            ) from None

    def _started(self) -> Future[Provider]:
        with self._lock:
            building = self._building
            if building is None:
                building = self._building = Future()
                # Running from here on: a caller's cancellation (its wrapper's) cannot cancel it.
                building.set_running_or_notify_cancel()
                threading.Thread(
                    target=self._run, args=(building,), name=f"router-build-{self.name}", daemon=True
                ).start()
            return building

    def _run(self, building: Future[Provider]) -> None:
        try:
            built = self._build()
        except BaseException as error:  # whatever it is, the callers waiting must hear of it
            kind = type(error).__name__
            logger.warning("building the %s client of provider %s failed (%s)", self._kind, self.name, kind)
            building.set_exception(error)
        else:
            self.built = built
            building.set_result(built)

    async def complete(self, call: Call) -> Reply:
        built = self.built
        return await (built if built is not None else await self.client()).complete(call)

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        built = self.built
        # Once built, the client's own stream: no extra step per chunk.
        return built.stream(call) if built is not None else self._stream_once_built(call)

    async def _stream_once_built(self, call: Call) -> AsyncIterator[Chunk]:
        chunks = (await self.client()).stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def list_models(self) -> list[str]:
        return await (await self.client()).list_models()

    async def aclose(self) -> None:
        """Close the client if it was built; a build under way is waited for, then closed."""
        building = self._building
        if building is not None and self.built is None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(building)
        if self.built is not None:
            await self.built.aclose()
