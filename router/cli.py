"""The `router` command: validate, explain, diff, complete, models, status, drain, restore, health,
chaos, simulate, demo, schema, fake-upstream, serve.

Exit codes: 0 success, 1 a request failed, 2 a policy (or the command line) is wrong or the
shared state does not answer.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from router.errors import AllTargetsFailed, PolicyError, ProviderError, RouterError

# Each command imports what it uses: `router --help` and `router validate` load neither the engine
# nor rich nor asyncio, and no command builds an SDK client before a call needs it.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from router._router import Router
    from router.policy.compile import RoutePlan, TargetPlan
    from router.results import Completion, TargetStatus
    from router.traffic import RouteTraffic

__all__ = ["main"]


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Made per command, so the width and the streams are those of this run (and of test runners).
    return Console(stderr=stderr, highlight=False)


def _load_router(path: str) -> Router:
    from router._router import Router
    from router.policy.loader import load_policy

    with _unloadable_exits(path):
        # Every missing key is reported at once, at its provider, before any client is built.
        return Router(load_policy(path, environment=True), source=path)


@contextlib.contextmanager
def _unloadable_exits(path: str) -> Iterator[None]:
    """A policy (or scenario) that does not load: every issue on stderr, then exit code 2."""
    try:
        yield
    except PolicyError as error:
        for issue in error.issues:
            click.echo(str(issue), err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"{error.filename or path}: cannot read: {error.strerror}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="router")
def main() -> None:
    """A failover routing engine for LLM calls, driven by a YAML policy."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--structure-only",
    is_flag=True,
    help="Check the files alone, not whether the environment holds every API key and AWS credential.",
)
def validate(files: tuple[str, ...], structure_only: bool) -> None:
    """Check policy files and the environment they need; print file:line:col: message for every problem."""
    from router.policy.loader import load_policy, unchecked_windows
    from router.policy.source import read_file

    failed = False
    for path in files:
        try:
            policy = load_policy(path, environment=not structure_only)
        except PolicyError as error:
            failed = True
            for issue in error.issues:
                click.echo(str(issue), err=True)
        except OSError as error:
            failed = True
            click.echo(f"{path}: cannot read: {error.strerror}", err=True)
        else:
            for warning in unchecked_windows(policy, read_file(path), path):
                click.echo(str(warning), err=True)
            click.echo(f"{path}: ok")
    sys.exit(2 if failed else 0)


_SIZE = [
    click.option("--input-tokens", type=int, default=500, show_default=True, help="Request size for costs."),
    click.option("--output-tokens", type=int, default=200, show_default=True),
]


def _size(command: Any) -> Any:
    for option in reversed(_SIZE):
        command = option(command)
    return command


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--route", "routes", multiple=True, help="Only this route (repeatable).")
@click.option("--traffic", is_flag=True, help="The expected traffic split and the cost per 1,000 requests.")
@click.option(
    "--metadata",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A request's metadata (repeatable): which of the route's rules applies, and its candidates.",
)
@click.option(
    "--windows",
    is_flag=True,
    help="Ask the providers' model listings for the context windows the policy does not declare.",
)
@_size
def explain(
    file: str,
    routes: tuple[str, ...],
    traffic: bool,
    pairs: tuple[str, ...],
    windows: bool,
    input_tokens: int,
    output_tokens: int,
) -> None:
    """Show each route's candidates in the order a request would try them now, and where prices come from."""
    metadata = _metadata(pairs)
    if traffic and pairs:
        raise click.UsageError("--traffic is every request's split; --metadata, one request's candidates")
    router = _load_router(file)
    out = _console()
    if traffic:
        _explain_traffic(router, out, routes, input_tokens, output_tokens)
        return
    if windows:
        _learn_windows(router)
    for name in routes or tuple(router.plan.routes):
        if name not in router.plan.routes:
            click.echo(f"unknown route {name!r}; routes: {', '.join(router.plan.routes)}", err=True)
            sys.exit(2)
        out.print(_candidates_table(router, name, metadata))
        out.print(f"  fails over on: {', '.join(sorted(router.plan.routes[name].failover_on))}")
        for line in _rule_lines(router.plan.routes[name], metadata if pairs else None):
            out.print(line)


def _learn_windows(router: Router) -> None:
    import asyncio

    async def learn() -> None:
        try:
            await router.learn_windows()
        finally:
            await router.aclose()

    asyncio.run(learn())


def _metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--metadata")
        metadata[key.strip()] = value.strip()
    return metadata


def _rule_lines(plan: RoutePlan, metadata: dict[str, str] | None) -> list[str]:
    """The route's rules, first match first; with `metadata`, which one applies."""
    lines = ["  rules (the first that matches picks the targets):"] if plan.rules else []
    for rule in plan.rules:
        when = " and ".join(
            f"{key}={next(iter(values))}" if len(values) == 1 else f"{key} in {{{', '.join(sorted(values))}}}"
            for key, values in rule.when
        )
        strategy = f" ({rule.strategy.name})" if rule.strategy else ""
        targets = ", ".join(t.name for t in rule.targets)
        lines.append(f"    {rule.index + 1}. when {when} -> {targets}{strategy}")
    if metadata is not None:
        picked = plan.rule_for(metadata)
        given = ", ".join(f"{key}={value}" for key, value in metadata.items()) or "none"
        applies = f"rule {picked.index + 1} applies" if picked else "no rule matches: the route's own targets"
        lines.append(f"  metadata {given}: {applies}")
    return lines


def _explain_traffic(
    router: Router, out: Console, routes: tuple[str, ...], input_tokens: int, output_tokens: int
) -> None:
    from router.resilience.breaker import BreakerState
    from router.resilience.runtime import Health
    from router.traffic import expected_traffic

    rows = _fleet_status(router)
    down = [row.target for row in rows if row.breaker == BreakerState.OPEN or row.drained
            or row.health == Health.UNHEALTHY]  # fmt: skip
    split = expected_traffic(
        router.plan, input_tokens=input_tokens, output_tokens=output_tokens, unavailable=down
    )
    _print_traffic(out, [t for t in split if not routes or t.route in routes], input_tokens, output_tokens)


def _candidates_table(router: Router, name: str, metadata: dict[str, str]) -> Table:
    """Route `name`'s plan in the title, its candidates in the order a request would try them now."""
    from rich.table import Table

    plan = router.plan.routes[name]
    retry = f"{plan.attempts} attempts on {', '.join(sorted(plan.retry_on)) or 'nothing'}"
    budget = f"total {plan.total:g}s" + (f", per attempt {plan.per_attempt:g}s" if plan.per_attempt else "")
    hedge = f", hedge after {plan.hedge_after:g}s" if plan.hedge_after else ""
    table = Table(title=f"route {name}: {plan.strategy}; {budget}{hedge}; retry {retry}")
    prices = ("USD/M in", "USD/M out", "price from")
    for column in ("#", "target", "provider/model", *prices, "window", "tier", "breaker"):
        table.add_column(column)
    for order, (target, state) in enumerate(router.candidates(name, metadata=metadata), start=1):
        table.add_row(
            str(order),
            target.name,
            f"{target.provider}/{target.model}",
            f"{target.input_price * 1e6:g}",
            f"{target.output_price * 1e6:g}",
            target.price_source,
            _window(target),
            target.tier,
            state,
        )
    return table


def _window(target: TargetPlan) -> str:
    if target.context_window is None:
        return "?"
    learned = " (listing)" if target.window_source == "listing" else ""
    return f"{target.context_window}{learned}"


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("route")
@click.argument("prompt")
@click.option("--stream", is_flag=True, help="Print the answer as it arrives.")
@click.option("--max-tokens", type=int, default=None)
@click.option("-v", "--verbose", is_flag=True, help="Print the attempt trail.")
def complete(file: str, route: str, prompt: str, stream: bool, max_tokens: int | None, verbose: bool) -> None:
    """Send PROMPT through ROUTE and print the answer."""
    import asyncio

    router = _load_router(file)
    messages = [{"role": "user", "content": prompt}]
    try:
        result = asyncio.run(_ask(router, route, messages, stream, max_tokens))
    except (AllTargetsFailed, ProviderError) as error:
        # A ProviderError's text names its kind already.
        kind = "" if isinstance(error, ProviderError) else "all_targets_failed: "
        click.echo(f"error: {kind}{error}", err=True)
        if verbose:
            _print_trail(error.attempts)
        sys.exit(1)
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    if not stream:
        click.echo(result.text)
    if verbose:
        _print_trail(result.attempts)
        _print_answered(result)


async def _ask(
    router: Router, route: str, messages: list[dict[str, str]], stream: bool, max_tokens: int | None
) -> Completion:
    """The answer to `messages` through `route`; a streamed one is printed as it arrives."""
    from router.results import Completion, StreamRestart

    async with router:
        if not stream:
            return await router.complete(route, messages, max_tokens=max_tokens)
        async for item in router.stream(route, messages, max_tokens=max_tokens):
            if isinstance(item, Completion):
                click.echo()
                return item
            if isinstance(item, StreamRestart):
                click.echo()
                click.echo(f"[{item.broken} broke off; {item.target} starts the answer over]", err=True)
                continue
            click.echo(item, nl=False)
    raise AssertionError("a stream always ends with its Completion")


def _print_answered(result: Completion) -> None:
    err = _console(stderr=True)
    err.print(
        f"answered by {result.target} ({result.provider}/{result.model}) in "
        f"{result.latency_s * 1000:.1f} ms; {result.usage.input_tokens} in / "
        f"{result.usage.output_tokens} out tokens; ${result.cost_usd:.6f}"
    )
    for warning in result.warnings:
        err.print(f"warning: {warning}")


def _print_trail(attempts: tuple[object, ...]) -> None:
    err = _console(stderr=True)
    for number, attempt in enumerate(attempts, start=1):
        err.print(f"  {number}. {attempt}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per provider.")
def models(file: str, providers: tuple[str, ...], timeout: float) -> None:
    """List each provider's models through its listing endpoint."""
    import asyncio

    router = _load_router(file)
    names = providers or tuple(router.plan.providers)
    unknown = [name for name in names if name not in router.plan.providers]
    if unknown:
        known = ", ".join(router.plan.providers)
        click.echo(f"unknown provider {unknown[0]!r}; providers: {known}", err=True)
        sys.exit(2)

    async def run() -> list[tuple[str, list[str] | ProviderError]]:
        async with router:
            return [(name, await router.list_models(name, within=timeout)) for name in names]

    failed = False
    for name, listed in asyncio.run(run()):
        if isinstance(listed, ProviderError):
            failed = True
            click.echo(f"{name}: error: {listed.kind}: {listed.message}", err=True)
            continue
        click.echo(f"{name}: {len(listed)} models")
        for model in listed:
            click.echo(f"  {model}")
    sys.exit(1 if failed else 0)


def _print_traffic(out: Console, split: list[RouteTraffic], input_tokens: int, output_tokens: int) -> None:
    from rich.table import Table

    out.print(f"requests of {input_tokens} input and {output_tokens} output tokens")
    for route in split:
        table = Table(title=f"route {route.route}: ${route.cost_per_1000:.4f} / 1k requests")
        table.add_column("target")
        table.add_column("share", justify="right")
        for target, share in sorted(route.shares.items(), key=lambda kv: -kv[1]):
            table.add_row(target, f"{share:.0%}")
        for target in route.unavailable:
            table.add_row(target, "unavailable")
        out.print(table)


@main.command()
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@_size
def diff(old: str, new: str, input_tokens: int, output_tokens: int) -> None:
    """How traffic and the cost per 1,000 requests move from policy OLD to policy NEW."""
    from rich.table import Table

    before = {t.route: t for t in _traffic_of(old, input_tokens, output_tokens)}
    after = {t.route: t for t in _traffic_of(new, input_tokens, output_tokens)}
    table = Table(title=f"{old} -> {new} (requests of {input_tokens} in / {output_tokens} out tokens)")
    for column in (
        "route",
        "target",
        "share before",
        "share after",
        "USD/1k before",
        "USD/1k after",
        "change",
    ):
        table.add_column(column)
    for route in sorted(before.keys() | after.keys()):
        was, now = before.get(route), after.get(route)
        targets = sorted({*(was.shares if was else {}), *(now.shares if now else {})})
        cost_was = was.cost_per_1000 if was else 0.0
        cost_now = now.cost_per_1000 if now else 0.0
        change = f"{(cost_now - cost_was) / cost_was:+.0%}" if cost_was else ("new" if now else "")
        for index, target in enumerate(targets):
            share_was = was.shares.get(target, 0.0) if was else 0.0
            share_now = now.shares.get(target, 0.0) if now else 0.0
            costs = (f"{cost_was:.4f}", f"{cost_now:.4f}", change) if index == 0 else ("", "", "")
            table.add_row(route if index == 0 else "", target, f"{share_was:.0%}", f"{share_now:.0%}", *costs)
    _console().print(table)


def _traffic_of(path: str, input_tokens: int, output_tokens: int) -> list[RouteTraffic]:
    from router.policy.compile import compile_plan
    from router.policy.loader import load_policy
    from router.traffic import expected_traffic

    with _unloadable_exits(path):
        plan = compile_plan(load_policy(path), path)
    return expected_traffic(plan, input_tokens=input_tokens, output_tokens=output_tokens)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def status(file: str, as_json: bool) -> None:
    """Every target's breaker, health, last probe, drain and leases, as the fleet sees it."""
    import dataclasses
    import json

    from rich.table import Table

    router = _load_router(file)
    rows = _fleet_status(router)
    if as_json:
        click.echo(json.dumps({"targets": [dataclasses.asdict(row) for row in rows]}, indent=2))
        return
    table = Table(title=f"{file}: {router.policy.state.backend} state")
    for column in (
        "target", "provider/model", "breaker", "health", "last probe", "drained", "in flight", "leased"
    ):  # fmt: skip
        table.add_column(column)
    for row in rows:
        probe = (
            f"{row.last_probe_ago:.0f}s ago ({row.probe_detail})" if row.last_probe_ago is not None else "-"
        )
        breaker = f"{row.breaker} (gen {row.generation})"
        drained = "yes" if row.drained else "no"
        model = f"{row.provider}/{row.model}"
        leased = ", ".join(f"{bucket} {held:.4g}" for bucket, held in row.leases.items()) or "-"
        table.add_row(row.target, model, breaker, row.health, probe, drained, str(row.in_flight), leased)
    _console().print(table)


def _fleet_status(router: Router) -> list[TargetStatus]:
    """`router.status()`; a state store that does not answer is one line on stderr and exit code 2."""
    import asyncio

    async def run() -> list[TargetStatus]:
        async with router:
            return await router.status()

    with _fails_in_one_line():
        return asyncio.run(run())


@contextlib.contextmanager
def _fails_in_one_line() -> Iterator[None]:
    """A router error (a state store that does not answer) on one line of stderr, then exit code 2.

    The router's own warning about the store is not printed besides it (unless logging is
    configured, which is then the caller's choice).
    """
    import logging

    quiet, logger = logging.NullHandler(), logging.getLogger("router")
    logger.addHandler(quiet)
    try:
        yield
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    finally:
        logger.removeHandler(quiet)


def _set_drained(file: str, target: str, drained: bool) -> None:
    import asyncio

    from router.state.registry import STORES

    router = _load_router(file)
    if not STORES[router.policy.state.backend].shared:
        # Unshared state lives inside each running process: this command cannot reach any of them.
        click.echo(
            f"error: {file} keeps its state in each process ({router.policy.state.backend}), so no "
            "running router can hear a drain; "
            "use `await router.drain(target)` in the process, or a shared state (state.backend: redis)",
            err=True,
        )
        sys.exit(2)

    async def run() -> None:
        async with router:
            await (router.drain(target) if drained else router.restore(target))

    with _fails_in_one_line():
        asyncio.run(run())
    click.echo(f"{target}: {'drained' if drained else 'restored'} for every worker of the fleet")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("target")
def drain(file: str, target: str) -> None:
    """Take TARGET out of service for every worker sharing the policy's Redis state."""
    _set_drained(file, target, True)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("target")
def restore(file: str, target: str) -> None:
    """Put a drained TARGET back in service."""
    _set_drained(file, target, False)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--daemon", is_flag=True, help="Keep probing every interval until stopped.")
def health(file: str, daemon: bool) -> None:
    """Probe the policy's targets (one prober per target across the fleet) and print the verdicts."""
    import asyncio

    router = _load_router(file)

    async def run() -> list[TargetStatus]:
        async with router:
            while daemon:
                await router.check_health()
                await asyncio.sleep(router.policy.health.interval)
            await router.check_health()
            return await router.status()

    try:
        with _fails_in_one_line():
            rows = asyncio.run(run())
    except KeyboardInterrupt:
        return
    for row in rows:
        click.echo(f"{row.target}: {row.health} ({row.probe_detail or 'no verdict'})")


@main.command()
def schema() -> None:
    """Print the policy's JSON Schema (for editor completion)."""
    import json

    from router.policy.loader import policy_json_schema

    click.echo(json.dumps(policy_json_schema(), indent=2))


@main.command()
@click.option(
    "--duration", type=click.FloatRange(min=2.0), default=20.0, show_default=True, help="Seconds of traffic."
)
@click.option("--redis", metavar="URL", help="Share breakers and health between the workers through Redis.")
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Worker processes, each sending the whole load.",
)
def demo(duration: float, redis: str | None, workers: int) -> None:
    """Fail over around a scripted outage on a local fake upstream, live (no keys, no Redis needed).

    Exits 1 if any request was lost.
    """
    from router.chaos.network import forbid_remote_connections
    from router.demo import run_demo

    forbid_remote_connections()
    try:
        lost = run_demo(_console(), duration=duration, workers=workers, redis=redis)
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    sys.exit(1 if lost else 0)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--policy", "policy", type=click.Path(dir_okay=False), help="Run this policy instead of the inline one."
)
@click.option(
    "--out",
    default="chaos-results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the JSON report and the PNG timeline go.",
)
@click.option(
    "--compare",
    type=click.Choice(["litellm"]),
    multiple=True,
    help="Run the same scenario through another router too (litellm: the bench extra).",
)
@click.option(
    "--workers", type=click.IntRange(min=1, max=64), help="Worker processes (default: the scenario's)."
)
@click.option(
    "--redis", metavar="URL", help="Workers share state through this Redis (default: the scenario's)."
)
def chaos(
    scenario: str,
    policy: str | None,
    out: str,
    compare: tuple[str, ...],
    workers: int | None,
    redis: str | None,
) -> None:
    """Run a chaos SCENARIO against a fake upstream: success, latency, detection, failback, cost.

    Writes OUT/NAME.json and OUT/NAME.png. Exits 1 if the router lost a request, 2 if the
    scenario (or its policy) is wrong.
    """
    from router.chaos import load_scenario, run_chaos
    from router.chaos.network import forbid_remote_connections

    with _unloadable_exits(scenario):
        loaded = load_scenario(scenario, policy_path=policy)
    forbid_remote_connections()
    try:
        result = run_chaos(loaded, out, compare=compare, workers=workers, redis=redis, console=_console())
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    sys.exit(1 if result.lost else 0)


@main.command()
@click.argument("policy", metavar="FILE", type=click.Path(dir_okay=False))
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    default="chaos-results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where NAME.simulated.json and NAME.simulated.png go.",
)
def simulate(policy: str, scenario: str, out: str) -> None:
    """Run the policy FILE through a chaos SCENARIO in virtual time: `router chaos`'s report, at once.

    The real router against simulated providers that play the scenario's fault schedule, on a
    virtual clock: a 15 s scenario takes a second or so and waits for nothing. Exits 1 if the
    router lost a request, 2 if the scenario or the policy is wrong.
    """
    from router.chaos import load_scenario
    from router.chaos.network import forbid_remote_connections
    from router.chaos.simulate import run_simulation

    with _unloadable_exits(scenario):
        loaded = load_scenario(scenario, policy_path=policy)
    forbid_remote_connections()  # nothing here connects anywhere; if something did, loopback only
    try:
        result = run_simulation(loaded, out, console=_console())
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    sys.exit(1 if result.lost else 0)


@main.command("fake-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8800, show_default=True)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="MODEL=SPEC",
    help="Inject a fault, e.g. gpt-4o=503, gpt-4o=outage:30s, gpt-4o=429:retry_after=2 (repeatable).",
)
def fake_upstream(host: str, port: int, faults: tuple[str, ...]) -> None:
    """Serve the OpenAI, Azure, Anthropic and Bedrock wires on loopback, with faults, until Ctrl-C."""
    from router.testing import serve

    try:
        serve(host, port, faults)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fault") from None


@main.command()
@click.argument("policy", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes sharing the port; more than one needs `state: redis`.",
)
@click.option("--watch", is_flag=True, help="Reload the policy when its file changes (the `watch` extra).")
def serve(policy: str, host: str, port: int, workers: int, watch: bool) -> None:
    """Serve the routes over HTTP (OpenAI's /v1/chat/completions, Anthropic's /v1/messages) until SIGTERM."""
    from router.gateway.serve import ServeOptions, unservable
    from router.gateway.serve import serve as run

    with _unloadable_exits(policy):
        refused = unservable(policy, workers)
    if refused:
        click.echo(refused, err=True)
        sys.exit(2)
    with _unloadable_exits(policy):
        run(ServeOptions(policy, host, port, workers, watch))


if __name__ == "__main__":  # pragma: no cover
    main()
