"""Per-request control (targets, attempts, max_cost, stream_recovery) through the real Router."""

from __future__ import annotations

import pytest

from router import AllTargetsFailed, Control, ErrorKind, InvalidRequest, StreamBroken
from router.results import Completion, Outcome
from router.testing.scripted import Step

from .conftest import USER


def outcomes(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def test_targets_reorder_the_route_for_one_call(rig):
    r = rig()
    r.script("b", Step.fail(ErrorKind.AUTH, status=401))
    result = await r.router.complete("chat", USER, targets=["b", "a"])
    assert outcomes(result) == [("b", "auth"), ("a", "ok")]
    # The next call without control takes the route's order again.
    again = await r.router.complete("chat", USER)
    assert outcomes(again) == [("a", "ok")]


async def test_targets_subset_leaves_the_others_out(rig):
    r = rig({"strategy": "cheapest"})
    r.script("a", Step.fail(ErrorKind.AUTH, status=401))
    with pytest.raises(AllTargetsFailed) as caught:
        await r.router.complete("chat", USER, targets=["a"])
    assert [a.target for a in caught.value.attempts] == ["a"]
    assert r.p2.count() == 0


async def test_a_provider_model_address_is_an_ad_hoc_target(rig):
    r = rig()
    r.script("a", Step.fail(ErrorKind.AUTH, status=401))
    r.p2.script("zeta", Step.reply("from zeta"))
    result = await r.router.complete("chat", USER, targets=["a", "p2:zeta"])
    assert (result.target, result.text, result.model) == ("p2:zeta", "from zeta", "zeta")
    assert outcomes(result) == [("a", "auth"), ("p2:zeta", "ok")]


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({"targets": ["nope"]}, "target 'nope' is not one of route 'chat'"),
        ({"targets": ["c"]}, "target 'c' is not one of route 'chat'"),  # a target, not of this route
        ({"targets": ["p9:m"]}, "target 'p9:m'"),  # no such provider
        ({"targets": []}, "at least one target"),
        ({"targets": "a"}, "list of target names"),
        ({"attempts": 0}, "attempts must be a whole number from 1 to 100"),
        ({"attempts": 101}, "attempts must be a whole number from 1 to 100"),
        ({"targets": ["a"] * 65}, "at most 64"),
        ({"targets": (t for t in ["a"])}, "list of target names"),
        ({"attempts": True}, "attempts must be a whole number"),
        ({"max_cost": -0.5}, "max_cost must be a number of USD, 0 or more"),
        ({"stream_recovery": "later"}, "stream_recovery must be one of continue, restart, raise"),
    ],
)
async def test_a_bad_control_value_is_refused_before_any_call(rig, control, message):
    r = rig()
    with pytest.raises(InvalidRequest, match=message) as caught:
        await r.router.complete("chat", USER, **control)
    assert isinstance(caught.value, ValueError)  # a gateway answers 400
    assert r.p1.count() + r.p2.count() == 0


async def test_an_unknown_route_is_an_invalid_request(rig):
    r = rig()
    with pytest.raises(InvalidRequest, match="unknown route 'chta'; routes: chat"):
        await r.router.complete("chta", USER)
    with pytest.raises(InvalidRequest, match="unknown route"):
        r.router.stream("chta", USER)  # at once, before a stream is handed out


async def test_attempts_override_the_routes_retries(rig):
    r = rig({"retry": {"attempts": 2, "backoff_base": "10ms"}})
    r.script("a", *[Step.fail(ErrorKind.SERVER_ERROR, status=500)] * 3)
    once = await r.router.complete("chat", USER, attempts=1)
    assert outcomes(once) == [("a", "server_error"), ("b", "ok")]
    thrice = await r.router.complete("chat", USER, attempts=3)
    assert outcomes(thrice) == [("a", "server_error"), ("a", "server_error"), ("a", "ok")]


async def test_max_cost_is_the_tighter_of_the_routes_and_the_calls(rig):
    # With 1024 output tokens assumed: a ~ $0.0021, b ~ $0.0010.
    r = rig({"max_cost": 1.0})
    result = await r.router.complete("chat", USER, max_cost=0.0015)
    assert outcomes(result)[0][:2] == ("a", Outcome.OVER_BUDGET)
    assert result.target == "b"
    # A looser cap than the route's changes nothing: the route's holds.
    tight = rig({"max_cost": 0.0015})
    assert (await tight.router.complete("chat", USER, max_cost=5.0)).target == "b"


async def test_stream_recovery_raise_for_one_call(rig):
    r = rig({"stream_recovery": "restart"})
    r.script("a", Step.reply("one two three", cut_after=2))
    with pytest.raises(StreamBroken) as caught:
        async for _ in r.router.stream("chat", USER, stream_recovery="raise"):
            pass
    assert caught.value.received == "one two"
    # Without it the route's restart carries the answer over to b.
    r.script("a", Step.reply("one two three", cut_after=2))
    items = [item async for item in r.router.stream("chat", USER)]
    final = items[-1]
    assert isinstance(final, Completion) and final.target == "b"


def test_complete_sync_takes_the_same_control(rig):
    r = rig()
    with r.router:
        result = r.router.complete_sync("chat", USER, targets=["b"], attempts=1)
    assert outcomes(result) == [("b", "ok")]


def test_control_parse_reads_header_and_json_values():
    headers = Control.parse(
        {"targets": "b, a", "deadline": "2s", "attempts": "3", "max-cost": "0.01", "stream_recovery": "Raise"}
    )
    assert headers == Control(("b", "a"), 2.0, 3, 0.01, "raise")
    body = Control.parse({"targets": ["a"], "deadline": 1.5, "metadata": {"tier": "premium"}})
    assert body.keywords() == {"targets": ("a",), "deadline": 1.5, "metadata": {"tier": "premium"}}
    assert Control.parse({"deadline": "250ms", "metadata": "tier=premium,team=ml"}).keywords() == {
        "deadline": 0.25,
        "metadata": {"tier": "premium", "team": "ml"},
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"retries": 2}, "unknown control field 'retries'"),
        ({"attempts": "two"}, "attempts must be a whole number"),
        ({"max_cost": "cheap"}, "max_cost must be a number"),
        ({"deadline": "soon"}, "deadline: expected a duration"),
        ({"deadline": "-1"}, "deadline must be a number of seconds above 0"),
        ({"metadata": "tier"}, "key=value pairs"),
        ({"stream_recovery": "never"}, "stream_recovery must be one of"),
        ({"x" * 5000: 1}, r"unknown control field 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\.\.\.;"),
    ],
)
def test_control_parse_refuses_bad_fields(fields, message):
    with pytest.raises(InvalidRequest, match=message):
        Control.parse(fields)


async def test_parsed_control_drives_a_call(rig):
    r = rig()
    r.script("b", Step.fail(ErrorKind.SERVER_ERROR, status=500))
    control = Control.parse({"targets": "b,a", "attempts": "1"})
    result = await r.router.complete("chat", USER, **control.keywords())
    assert outcomes(result) == [("b", "server_error"), ("a", "ok")]


async def test_models_lists_routes_aliases_and_addresses(rig):
    r = rig(aliases={"fast": "chat"})
    listed = {(m.id, m.kind, m.targets) for m in r.router.models()}
    assert listed == {
        ("chat", "route", ("a", "b")),
        ("fast", "alias", ("a", "b")),
        ("p1:a", "target", ("a",)),
        ("p2:b", "target", ("b",)),
        ("p2:c", "target", ("c",)),
    }
    assert (await r.router.complete("fast", USER)).target == "a"
    assert (await r.router.complete("p2:c", USER)).target == "p2:c"


async def test_provider_model_addresses_are_bounded(rig, monkeypatch):
    import router._router

    monkeypatch.setattr(router._router, "_MAX_ADDRESSES", 2)
    r = rig()
    assert (await r.router.complete("p2:x", USER)).target == "p2:x"
    assert (await r.router.complete("chat", USER, targets=["p2:y"])).target == "p2:y"
    assert (await r.router.complete("p2:x", USER)).target == "p2:x"  # known already: no new one
    with pytest.raises(InvalidRequest, match="2 provider:model addresses are in use already"):
        await r.router.complete("p2:z", USER)
    with pytest.raises(InvalidRequest, match="addresses are in use already"):
        await r.router.complete("chat", USER, targets=["a", "p1:z"])
    assert r.p1.count() + r.p2.count() == 3
