"""Redis for the tests: the shared server every suite uses, and dedicated servers to stop and restart.

Without Redis on 127.0.0.1:6379 the Redis tests skip locally and fail when `CI` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("ROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; Redis tests must not be skipped in CI", pytrace=False)
    pytest.skip(f"{reason} (set CI=1 to make this a failure)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        unavailable("no redis-server binary to run a dedicated Redis")
    return binary


class DedicatedRedis:
    """A `redis-server` subprocess on a free loopback port; `stop()`/`kill()` and `start()` keep the port.

    It persists nothing by itself (`--save "" --appendonly no`); an explicit SAVE writes
    `dump.rdb` in its directory, which the next `start()` loads.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--dbfilename", "dump.rdb",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5.0
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """A clean shutdown."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=5)

    def kill(self) -> None:
        """Stop it the hard way, as a crash would (SIGKILL: no goodbye to clients)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(5)

    def freeze(self) -> None:
        """Hang it (SIGSTOP): connections stay open and nothing answers, as a stuck server does."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server go on (SIGCONT)."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGCONT)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)
