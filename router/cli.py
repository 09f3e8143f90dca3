"""The `router` command: validate, explain, complete, schema, demo, fake-upstream.

Exit codes: 0 success, 1 a request failed, 2 a policy (or the command line) is wrong.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from router.core import Router
from router.errors import AllTargetsFailed, PolicyError, ProviderError, RouterError
from router.policy.loader import load_policy, policy_json_schema
from router.results import Completion, TargetStatus

__all__ = ["main"]


def _console(stderr: bool = False) -> Console:
    # Made per command, so the width and the streams are those of this run (and of test runners).
    return Console(stderr=stderr, highlight=False)


def _load_router(path: str) -> Router:
    try:
        return Router.from_file(path)
    except PolicyError as error:
        for issue in error.issues:
            click.echo(str(issue), err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"{path}: cannot read: {error.strerror}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="router")
def main() -> None:
    """A failover routing engine for LLM calls, driven by a YAML policy."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check policy files; print file:line:col: message for every problem."""
    failed = False
    for path in files:
        try:
            load_policy(path)
        except PolicyError as error:
            failed = True
            for issue in error.issues:
                click.echo(str(issue), err=True)
        except OSError as error:
            failed = True
            click.echo(f"{path}: cannot read: {error.strerror}", err=True)
        else:
            click.echo(f"{path}: ok")
    sys.exit(2 if failed else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--route", "routes", multiple=True, help="Only this route (repeatable).")
def explain(file: str, routes: tuple[str, ...]) -> None:
    """Show each route's candidates in the order a request would try them now."""
    router = _load_router(file)
    out = _console()
    for name in routes or tuple(router.plan.routes):
        if name not in router.plan.routes:
            click.echo(f"unknown route {name!r}; routes: {', '.join(router.plan.routes)}", err=True)
            sys.exit(2)
        plan = router.plan.routes[name]
        retry = f"{plan.attempts} attempts on {', '.join(sorted(plan.retry_on)) or 'nothing'}"
        budget = f"total {plan.total:g}s" + (
            f", per attempt {plan.per_attempt:g}s" if plan.per_attempt else ""
        )
        hedge = f", hedge after {plan.hedge_after:g}s" if plan.hedge_after else ""
        table = Table(title=f"route {name}: {plan.strategy}; {budget}{hedge}; retry {retry}")
        for column in ("#", "target", "provider/model", "USD/M in", "USD/M out", "window", "tier", "breaker"):
            table.add_column(column)
        for order, (target, state) in enumerate(router.candidates(name), start=1):
            table.add_row(
                str(order),
                target.name,
                f"{target.provider}/{target.model}",
                f"{target.input_price * 1e6:g}",
                f"{target.output_price * 1e6:g}",
                str(target.context_window or "?"),
                target.tier,
                state,
            )
        out.print(table)
        out.print(f"  fails over on: {', '.join(sorted(plan.failover_on))}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("route")
@click.argument("prompt")
@click.option("--stream", is_flag=True, help="Print the answer as it arrives.")
@click.option("--max-tokens", type=int, default=None)
@click.option("-v", "--verbose", is_flag=True, help="Print the attempt trail.")
def complete(file: str, route: str, prompt: str, stream: bool, max_tokens: int | None, verbose: bool) -> None:
    """Send PROMPT through ROUTE and print the answer."""
    router = _load_router(file)
    messages = [{"role": "user", "content": prompt}]

    async def run() -> Completion:
        async with router:
            if not stream:
                return await router.complete(route, messages, max_tokens=max_tokens)
            async for item in router.stream(route, messages, max_tokens=max_tokens):
                if isinstance(item, Completion):
                    click.echo()
                    return item
                click.echo(item, nl=False)
        raise AssertionError("a stream always ends with its Completion")

    try:
        result = asyncio.run(run())
    except (AllTargetsFailed, ProviderError) as error:
        kind = error.kind if isinstance(error, ProviderError) else "all_targets_failed"
        click.echo(f"error: {kind}: {error}", err=True)
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


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def status(file: str, as_json: bool) -> None:
    """Every target's breaker, health, last probe and drain, as the fleet sees it."""
    router = _load_router(file)

    async def run() -> list[TargetStatus]:
        async with router:
            return await router.status()

    rows = asyncio.run(run())
    if as_json:
        click.echo(json.dumps({"targets": [dataclasses.asdict(row) for row in rows]}, indent=2))
        return
    table = Table(title=f"{file}: {router.policy.state.backend} state")
    for column in ("target", "provider/model", "breaker", "health", "last probe", "drained", "in flight"):
        table.add_column(column)
    for row in rows:
        probe = (
            f"{row.last_probe_ago:.0f}s ago ({row.probe_detail})" if row.last_probe_ago is not None else "-"
        )
        breaker = f"{row.breaker} (gen {row.generation})"
        drained = "yes" if row.drained else "no"
        model = f"{row.provider}/{row.model}"
        table.add_row(row.target, model, breaker, row.health, probe, drained, str(row.in_flight))
    _console().print(table)


def _set_drained(file: str, target: str, drained: bool) -> None:
    router = _load_router(file)

    async def run() -> None:
        async with router:
            await (router.drain(target) if drained else router.restore(target))

    try:
        asyncio.run(run())
    except RouterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    click.echo(f"{target}: {'drained' if drained else 'restored'} ({router.policy.state.backend} state)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("target")
def drain(file: str, target: str) -> None:
    """Take TARGET out of service for every worker sharing the policy's state."""
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
    router = _load_router(file)

    async def run() -> list[TargetStatus]:
        async with router:
            while daemon:
                await router.check_health()
                await asyncio.sleep(router.policy.health.interval)
            await router.check_health()
            return await router.status()

    try:
        rows = asyncio.run(run())
    except KeyboardInterrupt:
        return
    for row in rows:
        click.echo(f"{row.target}: {row.health} ({row.probe_detail or 'no verdict'})")


@main.command()
def schema() -> None:
    """Print the policy's JSON Schema (for editor completion)."""
    click.echo(json.dumps(policy_json_schema(), indent=2))


@main.command()
def demo() -> None:
    """Fail over around a scripted outage on a local fake upstream (no keys needed)."""
    from router.demo import run_demo

    sys.exit(1 if run_demo(_console()) else 0)


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


if __name__ == "__main__":  # pragma: no cover
    main()
