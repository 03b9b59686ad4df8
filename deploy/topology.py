"""The production topology as processes on loopback: what docker-compose.prod.yml runs, without Docker.

:func:`plan` turns a :class:`TopologyConfig` into one :class:`ProcessSpec` per container of
docker-compose.prod.yml (PostgreSQL and Redis are the machine's, given by URL): the same
commands, the same ``CV_*`` settings, loopback ports in place of container names.
:class:`Topology` (deploy/runner.py) starts, watches and stops them. tests/e2e use it; so does
``python -m deploy up``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.models.catalogue import CATALOGUE

REPO = Path(__file__).resolve().parent.parent
TRAEFIK_DIR = REPO / "gateway" / "traefik"
MONITORING_DIR = REPO / "monitoring"
# Debian's packages name the Alertmanager binary prometheus-alertmanager; upstream's tarball, alertmanager.
PROMETHEUS_BINARIES = {"prometheus": ("prometheus",), "alertmanager": ("prometheus-alertmanager", "alertmanager")}


def monitoring_binaries() -> dict[str, str] | None:
    """The Prometheus and Alertmanager executables on PATH, or None when either is missing."""
    found = {name: next(filter(None, map(shutil.which, names)), None) for name, names in PROMETHEUS_BINARIES.items()}
    return None if None in found.values() else {name: str(path) for name, path in found.items()}


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def free_port() -> int:
    """A TCP port on loopback that nothing holds right now, below the kernel's ephemeral range.

    Not the kernel's own choice (``bind(0)``): that comes from the ephemeral range, from which BentoML picks the
    circus controller's port and the model services' ports a moment later, and every outgoing connection its local
    port, so a port we chose there could be handed out again before our server binds it. CI saw it: the api was
    given 48401 and BentoML's circus controller, started after the api's socket, was given 48401 too ("Address
    already in use"). A port from below the range is never handed out by the kernel; where the range is unknown
    (not Linux) the kernel's choice is the fallback.
    """
    bounds = _ephemeral_range()
    if bounds is not None and bounds[0] > LOWEST_PORT:
        for _ in range(200):
            port = secrets.randbelow(bounds[0] - LOWEST_PORT) + LOWEST_PORT
            if _bindable(port):
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class TopologyConfig:
    """What a native production topology needs from its caller."""

    run_dir: Path  # logs, per-process BentoML homes, Traefik's rendered config, shared data
    database_url: str  # PostgreSQL: inference logs, jobs and API keys
    redis_url: str  # rate limits, the result cache and the job broker
    bentoml_home: Path  # the model store `make import-models` filled
    key_hash_secret: str  # CV_GATEWAY_KEY_HASH_SECRET
    api_replicas: int = 2
    worker: bool = True
    base_port: int = 0  # 0: a free port for each process; else base_port, base_port + 1, ...
    # Redis keys of this topology (rate limits, cache) and its job queue, so two topologies can share a Redis.
    namespace: str = "cv"
    extra_env: dict[str, str] = field(default_factory=dict)  # CV_GATEWAY_* go to the auth service, the rest to the rest
    # Prometheus and Alertmanager beside the services (monitoring/), scraping every scrape_interval_s.
    monitoring: bool = False
    scrape_interval_s: float = 15.0
    # What the auth service signs the identity it forwards with, and the api replicas check (kernel/signing.py).
    # Only those two processes hold it, and they start together: a fresh one per run unless given.
    signing_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the topology: a container of docker-compose.prod.yml."""

    name: str  # the compose service (api replicas: api-1, api-2, ...)
    argv: list[str]
    env: dict[str, str]
    health_url: str | None = None  # 200 here means ready
    ready_log: str | None = None  # or: this text in its log means ready
    port: int | None = None
    oneshot: bool = False  # runs to completion before the others start (migrations)
    # A BentoML worker (services/serve.py): it gets a BentoML home of its own that shares the model store, as each
    # container has, so that its Prometheus multiprocess folder holds its own metrics only (deploy/runner.py).
    bentoml: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Plan:
    """Every process in start order, and the addresses a client needs."""

    processes: list[ProcessSpec]
    edge_url: str  # Traefik's public entry point
    internal_url: str  # Traefik's ping and metrics
    prometheus_url: str | None = None  # with monitoring
    alertmanager_url: str | None = None

    def get(self, name: str) -> ProcessSpec:
        return next(p for p in self.processes if p.name == name)

    @property
    def gateway_env(self) -> dict[str, str]:
        """What `python -m gateway keys ...` needs to manage this topology's keys."""
        return {k: v for k, v in self.get("auth").env.items() if k.startswith("CV_GATEWAY_")}


def _ports(config: TopologyConfig, count: int) -> list[int]:
    if config.base_port:
        return [config.base_port + i for i in range(count)]
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _bentoml(name: str, target: str, port: int, env: dict[str, str], health_path: str) -> ProcessSpec:
    """One BentoML worker without a supervisor (services/serve.py), as the containers run it."""
    argv = [sys.executable, "-m", "services.serve", target, "--host", "127.0.0.1", "--port", str(port)]
    return ProcessSpec(name, argv, env, _local(port, health_path), port=port, bentoml=True)


def _local(port: int, path: str = "") -> str:
    return f"http://127.0.0.1:{port}{path}"


def _serving_env(config: TopologyConfig) -> dict[str, str]:
    """What every serving process reads (compose: ``x-serving-env``)."""
    ns = config.namespace
    return {
        "CV_ENVIRONMENT": "production",
        "CV_LOG_JSON": "true",
        "CV_DATABASE_URL": config.database_url,
        "CV_REDIS_URL": config.redis_url,
        "CV_DATA_DIR": str(config.run_dir / "data"),  # the gallery index and job uploads: a shared volume in compose
        "CV_CACHE_PREFIX": f"{ns}:result:",
        "CV_JOBS_QUEUE": f"{ns}-jobs",
        "CV_JOBS_BROKER_URL": config.redis_url,
        "BENTOML_DO_NOT_TRACK": "true",
        **{k: v for k, v in config.extra_env.items() if not k.startswith("CV_GATEWAY_")},
    }


def _auth(config: TopologyConfig, port: int) -> ProcessSpec:
    env = {
        "CV_GATEWAY_ENVIRONMENT": "production",
        "CV_GATEWAY_DATABASE_URL": config.database_url,
        "CV_GATEWAY_REDIS_URL": config.redis_url,
        "CV_GATEWAY_REDIS_PREFIX": f"{config.namespace}:gw:",
        "CV_GATEWAY_KEY_HASH_SECRET": config.key_hash_secret,
        "CV_GATEWAY_SIGNING_SECRET": config.signing_secret,
        "CV_GATEWAY_HOST": "127.0.0.1",
        "CV_GATEWAY_PORT": str(port),
        **{k: v for k, v in config.extra_env.items() if k.startswith("CV_GATEWAY_")},
    }
    command = [sys.executable, "-m", "gateway", "serve"]
    return ProcessSpec("auth", command, env, health_url=_local(port, "/health"), port=port)


def _worker(config: TopologyConfig, env: dict[str, str]) -> ProcessSpec:
    from services.config import ServingSettings
    from services.jobs.embedded import worker_command

    settings = ServingSettings(_env_file=None, jobs_queue=env["CV_JOBS_QUEUE"])  # type: ignore[call-arg]
    command = worker_command(settings, hostname=f"{config.namespace}-worker@%h")
    return ProcessSpec("worker", command, env, ready_log=" ready.")


def _beat(config: TopologyConfig, env: dict[str, str]) -> ProcessSpec:
    """Celery beat: sends the periodic drift check for the worker to run (one per topology)."""
    schedule = str(Path(env["CV_DATA_DIR"]) / "celerybeat-schedule")
    command = [
        *[sys.executable, "-m", "celery", "--app", "services.jobs.celery_beat", "beat"],
        *["--schedule", schedule, "--loglevel", "INFO"],  # INFO: its "beat: Starting..." line says it is up
    ]
    return ProcessSpec("beat", command, env, ready_log="beat: Starting")


def _traefik(config: TopologyConfig, port: int, internal: int, auth: int, replicas: list[int]) -> ProcessSpec:
    env = {
        "CV_EDGE_AUTH_URL": _local(auth, "/auth"),
        "CV_EDGE_API_SERVERS": ",".join(_local(p) for p in replicas),
    }
    command = [
        str(Path(sys.executable).with_name("traefik")),
        f"--configFile={config.run_dir / 'traefik' / 'traefik.yml'}",
    ]
    return ProcessSpec("traefik", command, env, health_url=_local(internal, "/ping"), port=port)


def _monitoring(config: TopologyConfig, port: dict[str, int]) -> list[ProcessSpec]:
    """Alertmanager, then Prometheus on the rendered configuration (:func:`render_prometheus`)."""
    binaries = monitoring_binaries()
    if binaries is None:
        raise FileNotFoundError(
            "Prometheus and Alertmanager are not installed (Debian: apt install prometheus prometheus-alertmanager)"
        )
    home = config.run_dir / "monitoring"
    alertmanager = [
        binaries["alertmanager"],
        f"--config.file={MONITORING_DIR / 'alertmanager' / 'alertmanager.yml'}",
        f"--storage.path={home / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port['alertmanager']}",
        "--cluster.listen-address=",  # one instance: no gossip port
    ]
    prometheus = [
        binaries["prometheus"],
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{port['prometheus']}",
    ]
    return [
        ProcessSpec(name, argv, {}, _local(port[name], "/-/ready"), port=port[name])
        for name, argv in (("alertmanager", alertmanager), ("prometheus", prometheus))
    ]


def plan(config: TopologyConfig) -> Plan:
    """The processes of the topology, their commands, settings and ports (nothing is started)."""
    replicas = [f"api-{i + 1}" for i in range(config.api_replicas)]
    watch = ["prometheus", "alertmanager"] if config.monitoring else []
    names = ["traefik", "traefik-internal", "auth", *(m.name for m in CATALOGUE), *replicas, *watch]
    port = dict(zip(names, _ports(config, len(names)), strict=True))
    serving = _serving_env(config)
    models = {m.url_env: _local(port[m.name]) for m in CATALOGUE}
    # Compose gives each model service 2 CPUs of its own and 2 threads; here they share this machine's cores with
    # everything else, where one thread each answered more (benchmarks/reports/peers.md).
    model_env = {**serving, "CV_ORT_INTRA_OP_THREADS": os.environ.get("CV_ORT_INTRA_OP_THREADS", "1")}
    api_env = {
        **serving,
        **models,
        "CV_TRUST_GATEWAY_HEADERS": "true",
        "CV_GATEWAY_SIGNING_SECRET": config.signing_secret,
        "CV_JOBS_EMBEDDED_WORKER": "false",
    }
    processes = [
        ProcessSpec("migrate", [sys.executable, "-m", "services.db", "migrate"], serving, oneshot=True),
        *(_bentoml(m.name, m.service, port[m.name], model_env, "/readyz") for m in CATALOGUE),
        _auth(config, port["auth"]),
        *(_bentoml(r, "services.api:Api", port[r], api_env, "/api/v1/health") for r in replicas),
        *([_worker(config, {**serving, **models}), _beat(config, serving)] if config.worker else []),
        _traefik(config, port["traefik"], port["traefik-internal"], port["auth"], [port[r] for r in replicas]),
        *(_monitoring(config, port) if config.monitoring else []),
    ]
    return Plan(
        processes,
        edge_url=_local(port["traefik"]),
        internal_url=_local(port["traefik-internal"]),
        prometheus_url=_local(port["prometheus"]) if config.monitoring else None,
        alertmanager_url=_local(port["alertmanager"]) if config.monitoring else None,
    )


def render_traefik(config: TopologyConfig, plan: Plan) -> Path:
    """Write gateway/traefik/traefik.yml with loopback ports and local paths (dynamic.yml is used as is)."""
    out = config.run_dir / "traefik"
    out.mkdir(parents=True, exist_ok=True)
    static = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
    static["entryPoints"]["web"]["address"] = f"127.0.0.1:{plan.get('traefik').port}"
    static["entryPoints"]["internal"]["address"] = plan.internal_url.removeprefix("http://")
    static["providers"]["file"]["filename"] = str(TRAEFIK_DIR / "dynamic.yml")
    static["log"]["filePath"] = str(config.run_dir / "logs" / "traefik.log")
    static["accessLog"]["filePath"] = str(config.run_dir / "logs" / "access.log")
    path = out / "traefik.yml"
    path.write_text(yaml.safe_dump(static, sort_keys=False))
    return path


def _address(plan: Plan, name: str) -> str:
    return f"127.0.0.1:{plan.get(name).port}"


def render_prometheus(config: TopologyConfig, plan: Plan) -> Path:
    """Write monitoring/prometheus/prometheus.yml with this topology's loopback targets and the repository's rules.

    The jobs, rules and alerting are the compose file's; only the addresses (and the intervals) differ.
    """
    out = config.run_dir / "monitoring"
    out.mkdir(parents=True, exist_ok=True)
    conf = yaml.safe_load((MONITORING_DIR / "prometheus" / "prometheus.yml").read_text())
    interval = f"{config.scrape_interval_s:g}s"
    conf["global"].update(scrape_interval=interval, evaluation_interval=interval)
    conf["global"]["scrape_timeout"] = f"{min(config.scrape_interval_s, 10):g}s"
    conf["rule_files"] = [str(MONITORING_DIR / "prometheus" / "rules" / "*.yml")]
    conf["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [_address(plan, "alertmanager")]}]}]
    targets = {
        "traefik": [plan.internal_url.removeprefix("http://")],
        "auth": [_address(plan, "auth")],
        "api": [_address(plan, p.name) for p in plan.processes if p.name.startswith("api-")],
        "models": [_address(plan, m.name) for m in CATALOGUE],
        "prometheus": [_address(plan, "prometheus")],
        "alertmanager": [_address(plan, "alertmanager")],
    }
    for job in conf["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path
