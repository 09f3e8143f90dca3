"""Test support that users import too: a fake OpenAI upstream with fault injection, a fake clock.

The pytest plugin (`router.testing.pytest_plugin`, registered as an entry point) provides the
`fake_upstream` and `fake_clock` fixtures.
"""

from router.testing.clock import FakeClock
from router.testing.fake_upstream import FakeUpstream, RequestRecord, run_forever, serve
from router.testing.faults import Fault, FaultRule, parse_fault_spec

__all__ = [
    "FakeClock",
    "FakeUpstream",
    "Fault",
    "FaultRule",
    "RequestRecord",
    "parse_fault_spec",
    "run_forever",
    "serve",
]
