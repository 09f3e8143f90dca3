"""Fixtures for every suite (the shared Redis, dedicated ones), and a guard over the whole run:
no secret of any policy a test builds shows up in a log line or an error text.

Every `Router` registers its policy's secrets with `router.logs`; this plugin records every log
record (at DEBUG, with tracebacks) and the text of every `RouterError` raised during the whole
run, and fails the session if any registered secret appears in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from router import logs
from router.errors import RouterError

from .redis_support import REDIS_URL, DedicatedRedis, redis_binary, unavailable


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared test Redis, checked once per session."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def dedicated_redis(tmp_path: Path) -> Iterator[DedicatedRedis]:
    """A Redis of the test's own, which it may stop, kill and start again."""
    server = DedicatedRedis(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def secrets_never_leak() -> Iterator[None]:
    recorder = _Recorder()
    router_logger = logging.getLogger("router")
    level = router_logger.level
    router_logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(recorder)
    raised: list[RouterError] = []
    original = RouterError.__init__

    def recording_init(self: RouterError, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        raised.append(self)

    RouterError.__init__ = recording_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        RouterError.__init__ = original  # type: ignore[method-assign]
        logging.getLogger().removeHandler(recorder)
        router_logger.setLevel(level)
    text = "\n".join(recorder.lines + [str(error) for error in raised] + [repr(error) for error in raised])
    leaked = sorted(secret[:4] + "..." for secret in logs._secrets if secret in text)
    assert not leaked, f"secrets leaked into logs or error texts (first characters shown): {leaked}"
