"""Fixtures of the multi-process fleet suites: worker processes kept per module, a fake upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from router.testing import FakeUpstream

from .workers import Fleet

FLEET_SIZE = 4


@pytest.fixture(scope="module")
def processes() -> Iterator[Fleet]:
    """Four worker processes for the whole module (spawning costs ~1 s); a router per test."""
    fleet = Fleet(FLEET_SIZE)
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def fleet(processes: Fleet) -> Iterator[Fleet]:
    if not processes.healthy():
        pytest.fail("a worker process died in an earlier test", pytrace=False)
    yield processes
    processes.reset()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up
