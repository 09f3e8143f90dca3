"""The shared-state benchmark's leased limits: a request on a target with fleet rpm, tpm and a route
budget sends Redis nothing before its provider call (the figure `redis_roundtrips_before_call`).

The rest of the benchmark (the hung and budget runs, several processes) is covered by
tests/fleet/test_hung_store.py and tests/fleet/test_leases_multiprocess.py; only this figure is
checked here, on a tiny run against a Redis of the benchmark's own.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest


def test_no_redis_round_trip_before_the_call() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server to start")
    import shared_state

    with shared_state.own_redis() as server:
        trips = asyncio.run(shared_state.roundtrips_before_call(server.url, "smoke", 300))
    assert trips["calls"] == 300
    assert trips["mean"] == trips["max"] == 0
    assert trips["commands_per_request"] < 1  # the refills, in the background, now and then
