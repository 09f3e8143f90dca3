"""One stream's life: opened under the first-token budget, read under the idle budget, judged at its end.

`open_stream` waits for the first text (failover is free until then); `read` yields the text
from there on and raises `StreamBroken` (carrying what arrived) for a cut, a stall or an end
without a finish reason. Neither records anything: what a stream's end means for the target
(its breaker, its budgets, the trail) is the engine's to say. `continuation` is the request
that asks another target to go on from the text a broken stream already delivered.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from router._admission import NO_TICKET, Ticket
from router._deadline import Deadline
from router._selection import Request, estimate_tokens
from router.clock import Clock
from router.errors import ErrorKind, ProviderError, RouterError, StreamBroken
from router.providers.base import Call, Chunk
from router.resilience.runtime import TargetRuntime
from router.results import ToolCall, Usage

__all__ = [
    "OpenStream",
    "adapter_failure",
    "close",
    "continuation",
    "open_stream",
    "read",
]

logger = logging.getLogger("router")


@dataclass(slots=True)
class OpenStream:
    """A stream that has produced its first text (or ended): from here on, failover is no longer free.

    `received` is the text as delivered; `input_tokens` is the request's estimate, for the usage
    of a stream that broke before the provider reported it.
    """

    runtime: TargetRuntime
    chunks: AsyncIterator[Chunk]
    started: float
    deadline: float
    input_tokens: int
    warnings: list[str]
    watch: Deadline
    received: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    ended: bool = False
    ticket: Ticket = NO_TICKET

    @property
    def text(self) -> str:
        """The text received so far, joined once: the pieces give way to it, so that a long answer is
        neither held twice (as pieces and as text) nor joined again by every reader."""
        received = self.received
        if len(received) > 1:
            received[:] = ["".join(received)]
        return received[0] if received else ""

    def spent(self) -> Usage | None:
        """What the call cost: the provider's usage, else an estimate once text arrived (it was billed)."""
        if self.usage is not None or not self.received:
            return self.usage
        return Usage(self.input_tokens, len(self.text) // 4 + 1)  # as `estimate_tokens` counts text

    def absorb(self, chunk: Chunk) -> None:
        if chunk.warning:
            self.warnings.append(f"{self.runtime.plan.name}: {chunk.warning}")
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.tool_calls:
            self.tool_calls = chunk.tool_calls


def continuation(request: Request, shown: str) -> Request:
    """`request` with the text the caller already has as an assistant prefill, for a target to go on from."""
    messages = [*request.messages, {"role": "assistant", "content": shown}]
    return dataclasses.replace(request, messages=messages, input_tokens=estimate_tokens(messages))


async def open_stream(
    runtime: TargetRuntime,
    call: Call,
    *,
    started: float,
    deadline: float,
    first_deadline: float,
    idle: float | None,
    clock: Clock,
    input_tokens: int,
    warnings: list[str],
) -> OpenStream:
    """Start a stream and wait for its first text (or its end), under the first-token budget."""
    chunks = runtime.provider.stream(call)
    watch = Deadline(clock, first_deadline, idle)
    opened = OpenStream(runtime, chunks, started, deadline, input_tokens, warnings, watch)
    try:
        await _first_text(opened)
    except TimeoutError:
        watch.stop()
        await close(chunks)
        waited = (clock.monotonic() - started) * 1000
        raise ProviderError(
            ErrorKind.TIMEOUT, f"no first token after {waited:.0f} ms", provider=runtime.plan.provider
        ) from None
    except BaseException as error:
        watch.stop()
        await close(chunks)
        if isinstance(error, Exception) and not isinstance(error, RouterError):
            raise adapter_failure(runtime, error) from error
        raise
    watch.deadline = deadline  # from the first text on, the stream's own
    if opened.ended:
        watch.stop()
        _check_end(opened)
    return opened


async def _first_text(opened: OpenStream) -> None:
    # Silence between events counts even before the first text (role-only deltas, pings).
    while True:
        try:
            chunk = await opened.watch.wait(anext(opened.chunks))
        except StopAsyncIteration:
            opened.ended = True
            return
        opened.absorb(chunk)
        if chunk.text:
            opened.received.append(chunk.text)
            return


async def read(opened: OpenStream) -> AsyncGenerator[str, None]:
    """The stream's text from the first on; a cut, a stall or a bad end raises StreamBroken.

    On StreamBroken the stream is closed here; on anything else (the reader left, a cancellation)
    closing it is its owner's, who has permits to give back first.
    """
    chunks, watch, received = opened.chunks, opened.watch, opened.received
    try:
        if received:
            yield received[0]
        while not opened.ended:
            try:
                chunk = await watch.wait(anext(chunks))
            except StopAsyncIteration:
                opened.ended = True
                _check_end(opened)
                break
            except TimeoutError:
                why = "stalled" if watch.stalled() else "ran past its deadline"
                raise _broken(opened, f"the stream {why} after output began") from None
            except ProviderError as error:
                message = f"the stream broke after output began: {error.kind}: {error.message}"
                raise _broken(opened, message) from None
            except Exception as error:
                message = f"the stream broke after output began: {type(error).__name__}"
                raise _broken(opened, message) from error
            opened.absorb(chunk)
            text = chunk.text
            if text:
                received.append(text)
                yield text
    except StreamBroken:
        watch.stop()
        await close(chunks)
        raise
    finally:
        watch.stop()


def _check_end(opened: OpenStream) -> None:
    if opened.finish_reason is None:
        # Success is judged by a proper end: an answer without a finish reason may be cut short.
        raise _broken(opened, "the stream ended without a finish reason")
    if opened.finish_reason == "content_filter":
        raise ProviderError(
            ErrorKind.CONTENT_FILTER,
            "the answer was withheld by the provider's content filter",
            provider=opened.runtime.plan.provider,
        )


def _broken(opened: OpenStream, message: str) -> StreamBroken:
    plan = opened.runtime.plan
    return StreamBroken(message, received=opened.text, provider=plan.provider, target=plan.name)


def adapter_failure(runtime: TargetRuntime, error: Exception) -> ProviderError:
    # A provider that sends garbage must cost a failover, not the caller's request.
    logger.warning(
        "provider %s raised %s; counted as server_error", runtime.plan.provider, type(error).__name__
    )
    return ProviderError(
        ErrorKind.SERVER_ERROR,
        f"unexpected {type(error).__name__} from the adapter",
        provider=runtime.plan.provider,
    )


async def close(chunks: AsyncIterator[Chunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream may fail again; the first error is the one to report
            logger.debug("closing a broken stream failed", exc_info=True)
