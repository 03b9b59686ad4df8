"""``python -m deploy up``: the production topology on loopback; ``python -m deploy keys ...``: its API keys.

    python -m deploy up --database-url postgresql://postgres@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/0
    python -m deploy keys create --tier pro --name me     # the gateway CLI, with this topology's settings

``up`` runs until interrupted (Ctrl-C stops every process). The key-hash secret is taken from
``CV_GATEWAY_KEY_HASH_SECRET`` or generated once and kept in ``<run-dir>/gateway.env`` (mode 0600),
so keys created for one run still work in the next.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from deploy.runner import Topology, TopologyError
from deploy.topology import REPO, TopologyConfig, monitoring_binaries, plan

DEFAULT_RUN_DIR = REPO / ".run" / "prod"


def _secret(run_dir: Path) -> str:
    given = os.environ.get("CV_GATEWAY_KEY_HASH_SECRET")
    if given:
        return given
    path = run_dir / "key-hash-secret"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _write_env(path: Path, env: dict[str, str]) -> None:
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="logs, rendered config, state")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the topology and wait (Ctrl-C stops it)")
    up.add_argument(
        "--database-url", default=os.environ.get("CV_DATABASE_URL"), required="CV_DATABASE_URL" not in os.environ
    )
    up.add_argument("--redis-url", default=os.environ.get("CV_REDIS_URL", "redis://127.0.0.1:6379/0"))
    up.add_argument("--bentoml-home", type=Path, default=Path(os.environ.get("BENTOML_HOME", REPO / ".bentoml")))
    up.add_argument("--api-replicas", type=int, default=2)
    up.add_argument(
        "--base-port", type=int, default=8080, help="Traefik listens here; the rest on the next ports (0: any free)"
    )
    up.add_argument("--no-worker", action="store_true", help="leave out the Celery worker")
    up.add_argument(
        "--no-monitoring",
        action="store_true",
        help="leave out Prometheus and Alertmanager (left out anyway when they are not installed)",
    )
    up.add_argument("--scrape-interval", type=float, default=15.0, help="Prometheus' scrape and rule interval, s")
    up.add_argument(
        "--namespace", default="cv", help="prefix of this topology's Redis keys and queue (two topologies, one Redis)"
    )
    keys = commands.add_parser("keys", help="the gateway's key CLI with this topology's settings")
    keys.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env_file = args.run_dir / "gateway.env"
    if args.command == "keys":
        if not env_file.exists():
            print(f"{env_file} is missing: run `python -m deploy up` first", file=sys.stderr)
            return 2
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        command = [sys.executable, "-m", "gateway", "keys", *args.args]
        return subprocess.call(command, cwd=REPO, env={**os.environ, **env})
    monitoring = not args.no_monitoring and monitoring_binaries() is not None
    if not args.no_monitoring and not monitoring:
        print("Prometheus/Alertmanager not found (apt install prometheus prometheus-alertmanager): not started")
    config = TopologyConfig(
        run_dir=args.run_dir.resolve(),
        database_url=args.database_url,
        redis_url=args.redis_url,
        bentoml_home=args.bentoml_home.resolve(),
        key_hash_secret=_secret(args.run_dir),
        api_replicas=args.api_replicas,
        worker=not args.no_worker,
        base_port=args.base_port,
        namespace=args.namespace,
        monitoring=monitoring,
        scrape_interval_s=args.scrape_interval,
    )
    the_plan = plan(config)
    _write_env(env_file, the_plan.gateway_env)
    topology = Topology(config, the_plan)
    print(f"starting {', '.join(p.name for p in the_plan.processes)}; logs in {topology.log_dir}", flush=True)
    try:
        topology.start()
    except TopologyError as error:
        print(error, file=sys.stderr)
        return 1
    edge = the_plan.edge_url
    # Flushed: under a supervisor or a pipe stdout is block-buffered, and this process then only waits.
    print(f"ready: {edge}/ (OpenAPI UI), {edge}/api/v1/...; Traefik metrics {the_plan.internal_url}/metrics")
    if the_plan.prometheus_url:
        print(f"Prometheus {the_plan.prometheus_url}/alerts, Alertmanager {the_plan.alertmanager_url}")
    print("create a key: python -m deploy keys create --tier pro --name me", flush=True)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # after the children started: they keep theirs
    try:
        signal.sigwait(stop_signals)
    finally:
        topology.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
