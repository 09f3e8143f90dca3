"""State backends by name: `state.backend` builds the store its entry makes, and a shared one makes
the router a worker of a fleet."""

from __future__ import annotations

from typing import Any

import pytest

import router
from router import MemoryStore, Policy, PolicyError, Router, StateSpec, StoreType
from router.clock import Clock
from router.policy import parse_policy
from router.state.base import StateStore
from router.state.registry import STORES

POLICY: dict[str, Any] = {
    "providers": {"local": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
    "targets": {"small": {"provider": "local", "model": "small"}},
    "routes": {"chat": {"targets": ["small"]}},
}
TEXT = """\
providers:
  local: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
targets:
  small: {provider: local, model: small}
routes:
  chat: {targets: [small]}
state:
  backend: tape
"""


class TapeStore(MemoryStore):
    """A store of the user's own: in memory, but pretending to be shared, and saying who built it."""

    def __init__(self, spec: StateSpec, worker: str, clock: Clock) -> None:
        super().__init__(clock)
        self.namespace, self.worker = spec.namespace, worker


def tape(spec: StateSpec, worker: str, clock: Clock) -> StateStore:
    return TapeStore(spec, worker, clock)


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(STORES, "_entries", dict(STORES._entries))  # other tests see the built-ins


async def test_memory_serves_one_worker_and_redis_a_fleet() -> None:
    alone = Router(Policy.model_validate(POLICY))
    assert type(alone.store) is MemoryStore and alone._fleet is None
    state = {"backend": "redis", "url": "redis://127.0.0.1:6379/0", "namespace": "registry-test"}
    worker = Router(Policy.model_validate(POLICY | {"state": state}))
    assert type(worker.store).__name__ == "RedisStore" and worker._fleet is not None
    await alone.aclose()
    await worker.aclose()


async def test_a_registered_backend_builds_the_store() -> None:
    router.register_store(StoreType("tape", tape, shared=True))
    worker = Router(
        Policy.model_validate(POLICY | {"state": {"backend": "tape", "namespace": "n"}}), worker="w1"
    )
    assert isinstance(worker.store, TapeStore) and (worker.store.namespace, worker.store.worker) == (
        "n",
        "w1",
    )
    assert worker._fleet is not None  # shared: this router is one worker of a fleet
    await worker.aclose()
    router.register_store(StoreType("tape", tape), replace=True)
    alone = Router(Policy.model_validate(POLICY | {"state": {"backend": "tape"}}))
    assert isinstance(alone.store, TapeStore) and alone._fleet is None
    await alone.aclose()


def test_an_unknown_backend_is_located_and_a_registered_one_checked() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(TEXT, "p.yaml", env={})
    assert [str(issue) for issue in caught.value.issues] == [
        "p.yaml:8:12: must be one of 'memory', 'redis' (state.backend)"
    ]
    router.register_store(StoreType("tape", tape, needs=("url",)))
    with pytest.raises(PolicyError) as caught:
        parse_policy(TEXT, "p.yaml", env={})
    assert [str(issue) for issue in caught.value.issues] == ["p.yaml:8:3: the tape backend needs url (state)"]
    assert parse_policy(TEXT + "  url: redis://127.0.0.1:1\n", "p.yaml", env={}).state.backend == "tape"
