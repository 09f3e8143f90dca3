"""Worker processes leave nothing behind: no named semaphore, however the parent ends.

Python's resource tracker warns "leaked semaphore objects" when a process that made named
semaphores (a `multiprocessing.Queue` has three) ends without unlinking them: a parent stopped by
SIGTERM (`timeout`, a CI job cancelled, a supervisor) never runs its exit handlers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

DEMO = [sys.executable, "-m", "router.cli", "demo", "--duration", "2", "--workers", "2"]
ENV = {**os.environ, "COLUMNS": "120"}


def test_a_demo_with_workers_leaks_no_semaphore(redis_url: str) -> None:
    done = subprocess.run([*DEMO, "--redis", redis_url], capture_output=True, text=True, timeout=60, env=ENV)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "requests lost: 0" in done.stdout
    assert "leaked semaphore" not in done.stderr
    assert done.stderr == ""


def test_a_demo_stopped_by_sigterm_leaks_no_semaphore() -> None:
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 30
        for line in demo.stdout:  # the first status line: the workers are sending traffic
            if "healthy" in line or time.monotonic() > deadline:
                break
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=30)  # stderr ends when the workers and the tracker have
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()

    assert "leaked semaphore" not in err, err
