"""Test support that users import too: a fake LLM upstream with fault injection, a fake clock.

The fake upstream speaks the OpenAI, Azure OpenAI, Anthropic and Bedrock wires on one port
(`router.testing.wires` renders each); `Fault` and `FaultRule` say what goes wrong, and when.

The pytest plugin (`router.testing.pytest_plugin`, registered as an entry point) provides the
`fake_upstream` and `fake_clock` fixtures.
"""

from router.testing._fault_spec import parse_fault_spec
from router.testing.clock import FakeClock
from router.testing.fake_upstream import FakeUpstream, RequestRecord, run_forever, serve
from router.testing.faults import Fault, FaultRule

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
