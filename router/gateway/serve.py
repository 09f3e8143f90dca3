"""`router serve`: worker processes, each one `Router` and one aiohttp site, supervised by the parent.

With `--workers 1` the one worker runs in the parent process. With more, the parent starts them
(spawned, so that no event loop or client is shared by a fork), each binding the same port with
`SO_REUSEPORT` (the kernel spreads connections over them), restarts one that dies, and forwards
SIGHUP (reload the policy: each worker keeps its last good one on a bad edit) and SIGTERM/SIGINT
(stop accepting, finish the requests in flight, exit). Workers share breakers, health, limits,
budgets and keys' buckets through the policy's state store, so more than one needs `state: redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web

from router._router import Router
from router.gateway.app import Gateway
from router.policy.loader import load_policy
from router.state.registry import STORES

__all__ = ["ServeOptions", "serve", "unservable"]

logger = logging.getLogger("router")

_RESTART_PAUSE = 1.0  # a worker that dies is started again after this, not in a tight loop
_SUPERVISE_EVERY = 0.2
_EARLY_EXIT = 10.0  # a worker that exits this soon after its start is not started again: the fleet stops


@dataclass(frozen=True, slots=True)
class ServeOptions:
    policy: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    watch: bool = False


def unservable(policy_path: str, workers: int) -> str | None:
    """Load the policy (`PolicyError` for its issues, with the environment's missing keys), and say why
    `workers` processes cannot serve it: more than one needs state they share."""
    backend = load_policy(policy_path, environment=True).state.backend
    if workers <= 1 or STORES[backend].shared:
        return None
    return (
        f"--workers {workers} needs state the workers share: with `state: {backend}` each worker would keep "
        "its own breakers, limits and budgets (N times the limits). Set `state: {backend: redis, url: ...}` "
        "in the policy, or serve with --workers 1."
    )


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM or SIGINT; returns once every worker has finished its requests."""
    _log_to_stderr("%(asctime)s %(levelname)s %(message)s")
    if options.workers <= 1:
        asyncio.run(_worker(options, reuse_port=False, index=0))
        return
    _Supervisor(options).run()


async def _worker(options: ServeOptions, *, reuse_port: bool, index: int) -> None:
    stop = _stop_on_signals()  # first: a SIGTERM while the worker starts ends it cleanly
    registry, metrics = _metrics()
    router = Router.from_file(options.policy, on_event=metrics)
    router.reload_on_sighup()
    # A supervised worker reloads its siblings through the parent, which forwards SIGHUP to every worker.
    reload_others = (lambda: os.kill(os.getppid(), signal.SIGHUP)) if reuse_port else None
    gateway = Gateway(router, metrics=registry, reload_others=reload_others)
    try:
        await router.start()  # the fleet joined and the clients built before the first connection
        runner = await _listen(gateway, options, reuse_port)
    except BaseException:
        await router.aclose()
        raise
    loop = asyncio.get_running_loop()
    watcher = loop.create_task(router.watch()) if options.watch else None
    # The windows a policy leaves undeclared, from the listings that report them: checked once learned.
    learning = loop.create_task(router.learn_windows())
    _announce(options, gateway, index)
    await stop.wait()
    learning.cancel()
    gateway.draining = True
    logger.info("worker %d (pid %d): stopping; finishing the requests in flight", index, os.getpid())
    await runner.cleanup()  # stops accepting, then waits for the handlers in flight
    if watcher is not None:
        watcher.cancel()
    await asyncio.gather(learning, *([watcher] if watcher else []), return_exceptions=True)
    await router.aclose()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return stop


async def _listen(gateway: Gateway, options: ServeOptions, reuse_port: bool) -> web.AppRunner:
    spec = gateway.spec
    runner = web.AppRunner(
        gateway.app(),
        access_log=None,
        keepalive_timeout=spec.keepalive,
        max_line_size=spec.max_header,
        max_field_size=spec.max_header,
        # In-flight requests may take as long as the longest route allows before the worker exits.
        shutdown_timeout=max([60.0, *(route.total for route in gateway.router.plan.routes.values())]) + 1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, reuse_port=reuse_port or None, backlog=1024)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise SystemExit(f"cannot listen on {options.host}:{options.port}: {error.strerror}") from None
    return runner


def _announce(options: ServeOptions, gateway: Gateway, index: int) -> None:
    where = f"http://{options.host}:{options.port}"
    logger.info(
        "worker %d (pid %d) serving %s on %s (policy version %d)",
        index, os.getpid(), options.policy, where, gateway.router.version,
    )  # fmt: skip
    if gateway.keys.open:
        reach = "this machine" if _loopback(options.host) else f"anyone who can reach {options.host}"
        log = logger.info if _loopback(options.host) else logger.warning
        log("no gateway.keys in the policy: the gateway is open to %s", reach)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _log_to_stderr(form: str) -> None:
    """The router's own lines from INFO up; the libraries' (an HTTP client's line per call) from WARNING."""
    logging.basicConfig(level=logging.WARNING, format=form)
    logger.setLevel(logging.INFO)


def _metrics() -> tuple[Any, Any]:
    """A Prometheus registry and the hook that feeds it; (None, None) without the `metrics` extra."""
    try:
        from prometheus_client import CollectorRegistry

        from router.metrics import PrometheusMetrics
    except ImportError:
        return None, None
    registry = CollectorRegistry()
    return registry, PrometheusMetrics(registry)


def _run_worker(options: ServeOptions, index: int) -> None:
    """A worker process's body (spawned: a fresh interpreter)."""
    _log_to_stderr(f"%(asctime)s worker-{index} %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(options, reuse_port=True, index=index))


class _Supervisor:
    """The parent of `--workers N`: starts them, restarts one that dies, forwards signals."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.started: dict[int, float] = {}
        self.stopping = False
        self.failed = ""

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        self.workers = [self._start(index) for index in range(self.options.workers)]
        while not self.stopping:
            time.sleep(_SUPERVISE_EVERY)
            for index, process in enumerate(self.workers):
                if not process.is_alive() and not self.stopping:
                    self._restart(index, process)
        for process in self.workers:
            process.join()
        if self.failed:
            raise SystemExit(self.failed)

    def _restart(self, index: int, process: BaseProcess) -> None:
        if time.monotonic() - self.started[index] < _EARLY_EXIT:
            # Dying as it starts (the port taken, the policy changed under it): starting it again would loop.
            self.failed = f"worker {index} exited with {process.exitcode} as it started; stopping the others"
            logger.error("%s", self.failed)
            self._stop(signal.SIGTERM, None)
            return
        logger.warning("worker %d exited with %s; starting it again", index, process.exitcode)
        time.sleep(_RESTART_PAUSE)
        self.workers[index] = self._start(index)

    def _start(self, index: int) -> BaseProcess:
        process = self.context.Process(
            target=_run_worker, args=(self.options, index), name=f"router-worker-{index}"
        )
        process.start()
        self.started[index] = time.monotonic()
        return process

    def _forward(self, signum: int, frame: Any) -> None:
        for process in self.workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self._forward(signal.SIGTERM, frame)
