"""The production topology on loopback (deploy/), once for the e2e tests: Traefik, auth, 2 api replicas,
the model services and a Celery worker, on the machine's PostgreSQL (a schema of its own) and Redis
(a key namespace of its own). Keys are made with the gateway's CLI, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy.runner import Topology
from deploy.topology import REPO, TopologyConfig, plan
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    REDIS_URL,
    fresh_schema,
    postgres_endpoint,
    postgres_url,
    redis_endpoint,
    redis_keys,
)


@pytest.fixture(scope="session")
def topology(
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],  # noqa: F811  (the fixture imported above)
    redis_endpoint: tuple[str, int],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Topology]:
    namespace = f"e2e{uuid.uuid4().hex[:8]}"
    with fresh_schema() as schema, redis_keys(f"{namespace}:"):
        config = TopologyConfig(
            run_dir=tmp_path_factory.mktemp("topology"),
            database_url=postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0]),
            redis_url=REDIS_URL,
            bentoml_home=Path(bentoml_home),
            key_hash_secret=secrets.token_urlsafe(32),
            namespace=namespace,
            # Prometheus and Alertmanager beside it, scraping every 2 s so an alert fires within the test's patience.
            monitoring=True,
            scrape_interval_s=2,
            # Every request reaches a model, as traffic would; the auth service logs each admission (its clock).
            extra_env={"CV_CACHE_ENABLED": "false", "CV_GATEWAY_LOG_LEVEL": "DEBUG"},
        )
        with Topology(config, plan(config)) as running:
            yield running
        _drop_queue(namespace)


def _drop_queue(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(f"{namespace}-jobs")
    client.close()


def gateway_cli(topology: Topology, *args: str) -> str:
    """``python -m gateway keys ARGS`` against the topology's key database; its output."""
    env = {**os.environ, **topology.plan.gateway_env}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def new_key(topology: Topology) -> Callable[[str], tuple[str, str]]:
    """Make a key of a tier with the CLI: (key, prefix)."""

    def make(tier: str) -> tuple[str, str]:
        out = gateway_cli(topology, "create", "--tier", tier, "--name", f"e2e-{tier}")
        key = out.strip().splitlines()[-1]
        return key, key.split("_")[1]

    return make


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a log (other lines skipped)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
    return lines
