"""The fixtures the `pytest11` entry point provides, the public names, and the CLI entry point."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import router.testing
from router.testing import FakeClock, FakeUpstream


def test_public_names() -> None:
    assert sorted(router.testing.__all__) == [
        "FakeClock",
        "FakeUpstream",
        "Fault",
        "FaultRule",
        "RequestRecord",
        "parse_fault_spec",
        "run_forever",
        "serve",
    ]
    assert all(hasattr(router.testing, name) for name in router.testing.__all__)


def test_fake_upstream_fixture_is_started(fake_upstream: FakeUpstream) -> None:
    assert fake_upstream.running
    assert fake_upstream.base_url.startswith("http://127.0.0.1:")
    assert fake_upstream.log == []


async def test_fake_clock_fixture_runs_in_virtual_time(fake_clock: FakeClock) -> None:
    before = fake_clock.monotonic()

    await fake_clock.sleep(30)

    assert fake_clock.monotonic() - before == 30


MESSAGES = [{"role": "user", "content": "hi"}]


def test_serve_until_interrupted() -> None:
    code = "from router.testing import serve; serve(port=0, faults=['gpt-4o=503', 'o3=cut:1,times=2'])"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            faults = [process.stdout.readline(), process.stdout.readline()]
            base_url = banner.split()[-1]
            request = urllib.request.Request(
                f"{base_url}/chat/completions",
                data=json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=2):
                    status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=5)
        finally:
            process.kill()

    assert banner.startswith("fake upstream listening on http://127.0.0.1:")
    assert faults == ["  fault: gpt-4o -> http_503\n", "  fault: o3 -> cut (2 time(s))\n"]
    assert status == 503
    assert process.returncode == 0, stderr
