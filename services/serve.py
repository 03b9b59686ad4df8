"""One BentoML worker and nothing above it: ``python -m services.serve services.classifier:ClassifierService``.

``bentoml serve`` runs a supervisor (circus's arbiter) that imports the service, binds the port and starts the workers
as its children. Each supervisor holds ~67 MB (PSS) for the life of the service, BentoML's SDK mostly, to restart a
worker that dies, which in a container, or under deploy/'s runner, the process manager above it does already: five
supervisors were a fifth of the production topology at rest, and the detector's pushed it past 300 MB
(benchmarks/reports/memory.md; docs/adr/0018-one-process-per-serving-container.md).

This module does what the supervisor does for one worker, then ``exec``s into BentoML's own worker entry point
(``_bentoml_impl.worker.service``, what the supervisor runs; bentoml is pinned in pyproject.toml) with the bound
socket: the process that imported BentoML to read the configuration *becomes* the worker, so nothing stays behind.
What it keeps from ``bentoml serve`` (``_bentoml_impl.server.serving.serve_http``): the service's ``envs``, the
allocator's worker environment, the deployment hooks, the backlog, the runner map naming the service itself, and the
Prometheus multiprocess folder under BENTOML_HOME, emptied (deploy/ gives each process a home of its own). What it
refuses: a service that wants more than one worker, or dependencies without a URL (those need ``bentoml serve``, which
starts them); ``make serve`` and local development keep ``bentoml serve``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.config import get_settings

WORKER_MODULE = "_bentoml_impl.worker.service"


class ServeError(Exception):
    """The service cannot run as one bare worker."""


@dataclass(frozen=True)
class WorkerLaunch:
    """What to ``exec``: the argument vector and the environment, with the bound socket's descriptor in ``argv``."""

    argv: list[str]
    env: dict[str, str]


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on ``host:port``, inheritable across ``exec``."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError as exc:
        raise ServeError(f"invalid host IP address: {host}") from exc
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.set_inheritable(True)
    return sock


def service_env(envs: Sequence[Any], environ: dict[str, str]) -> dict[str, str]:
    """The service's declared variables (``bentoml.Service(envs=...)``): the environment's value, else the default."""
    out: dict[str, str] = {}
    for var in envs:
        if var.name in environ:
            out[var.name] = environ[var.name]
        elif var.value:
            out[var.name] = str(var.value)
        else:
            raise ServeError(f"environment variable {var.name!r} is required by the service but not set")
    return out


def load_service(target: str) -> Any:
    """``target``'s service with its configuration in BentoML's container, as ``bentoml serve`` loads it.

    This imports BentoML; the ``exec`` that follows drops it with the rest of this process's memory.
    """
    from _bentoml_impl.loader import load

    svc = load(target, ".")
    svc.inject_config()
    return svc


def configured_backlog() -> int:
    """The listening backlog BentoML's configuration gives (read after :func:`load_service`)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return int(BentoMLContainer.api_server_config.backlog.get())


def prepare(
    svc: Any,
    target: str,
    host: str,
    port: int,
    fd: int,
    backlog: int,
    environ: dict[str, str],
    keep_alive_s: int,
) -> WorkerLaunch:
    """The worker's command and environment for ``svc`` (from :func:`load_service`) serving on socket ``fd``.

    ``backlog`` is the one the socket was bound with (:func:`configured_backlog`), told to the worker as well.
    ``keep_alive_s``: how long the worker keeps an idle keep-alive connection (``CV_KEEP_ALIVE_TIMEOUT_S``).
    """
    from _bentoml_impl.server.allocator import ResourceAllocator
    from _bentoml_impl.server.serving import server_on_deployment
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml.serving import ensure_prometheus_dir

    workers, worker_env = ResourceAllocator().get_worker_env(svc)
    if workers != 1:
        raise ServeError(f"{svc.name} asks for {workers} workers; one bare worker serves one: use `bentoml serve`")
    unresolved = sorted(name for name in svc.all_services(exclude_urls=True) if name != svc.name)
    if unresolved:
        raise ServeError(f"{svc.name} depends on {unresolved} without a URL; `bentoml serve` starts those")
    server_on_deployment(svc)
    display_host = "localhost" if host in ("0.0.0.0", "::") else host
    env = {
        **environ,
        **service_env(svc.envs, environ),
        **worker_env,
        "PROMETHEUS_MULTIPROC_DIR": ensure_prometheus_dir(),  # emptied: what a previous run left
        "BENTOML_RUNNER_MAP": json.dumps({svc.name: f"http://{display_host}:{port}"}),
    }
    argv = [
        *[sys.executable, "-m", WORKER_MODULE, target, "--fd", str(fd), "--service-name", svc.name],
        *["--backlog", str(backlog), "--worker-id", "1", "--timeout-keep-alive", str(keep_alive_s)],
        *["--args", json.dumps(BentoMLContainer.bento_arguments.get())],
    ]
    return WorkerLaunch(argv, env)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="the service, as `bentoml serve` takes it (module:Class)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        svc = load_service(args.target)  # `python -m` put the working folder first on sys.path, as the worker's does
        backlog = configured_backlog()
        sock = bind(args.host, args.port, backlog)
        keep_alive = get_settings().keep_alive_timeout_s
        launch = prepare(svc, args.target, args.host, args.port, sock.fileno(), backlog, dict(os.environ), keep_alive)
    except (ServeError, OSError) as exc:
        print(f"services.serve: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(launch.argv[0], launch.argv, launch.env)  # pragma: no cover - replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
