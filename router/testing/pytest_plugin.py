"""pytest fixtures for testing code built on the router; loaded through the `pytest11` entry point.

Imports stay inside the fixtures so that merely having the router installed costs a test
session nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from router.testing import FakeClock, FakeUpstream


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A started `FakeUpstream` on a free loopback port, stopped after the test."""
    from router.testing import FakeUpstream

    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def fake_clock() -> FakeClock:
    """A `FakeClock` in virtual time (auto-advancing)."""
    from router.testing import FakeClock

    return FakeClock()
