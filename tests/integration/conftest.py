"""One real server on loopback for the integration tests; PostgreSQL and Redis per test, behind proxies."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from kernel.db.session import create_db_engine
from services.clients.inprocess import InProcessClient
from services.clients.threaded import ThreadedClient
from services.config import ServingSettings, get_settings
from tests.integration.proxy import TcpProxy
from tests.integration.server import Server, start_server


@pytest.fixture(scope="session")
def server(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("server-data")
    running = start_server(data / "server.log", {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data)})
    yield running
    running.stop()


# The machine's PostgreSQL and Redis (.ci/run starts them when they are down). Tests never stop them:
# each test gets its own schema / key prefix, and reaches them through a TcpProxy it can cut.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _endpoint(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        message = f"no server at {host}:{port} ({url}); .ci/run starts it"
        if os.environ.get("TEST_REQUIRE_SERVERS"):
            pytest.fail(message)
        pytest.skip(message)
    return host, port


def postgres_url(port: int, schema: str, host: str = "127.0.0.1") -> str:
    """The test database at ``host:port`` with ``schema`` first on the search path."""
    parts = urlsplit(POSTGRES_URL)
    auth = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{auth}{host}:{port}{parts.path}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_endpoint() -> tuple[str, int]:
    return _endpoint(POSTGRES_URL, 5432)


@pytest.fixture(scope="session")
def redis_endpoint() -> tuple[str, int]:
    return _endpoint(REDIS_URL, 6379)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema in the test database, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(ServingSettings(_env_file=None, database_url=POSTGRES_URL).sqlalchemy_url)  # type: ignore[call-arg]
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def redis_keys(prefix: str) -> Iterator[str]:
    """Yield ``prefix``; delete every key under it afterwards."""
    import redis

    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        stale = list(client.scan_iter(match=f"{prefix}*"))
        if stale:
            client.delete(*stale)
        client.close()


@pytest.fixture
def pg_schema(postgres_endpoint: tuple[str, int]) -> Iterator[str]:
    """A fresh schema per test."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture
def pg_proxy(postgres_endpoint: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*postgres_endpoint) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(redis_endpoint: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*redis_endpoint) as proxy:
        yield proxy


@pytest.fixture
def redis_prefix(redis_endpoint: tuple[str, int]) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    with redis_keys(f"cvtest:{uuid.uuid4().hex[:12]}:") as prefix:
        yield prefix


@pytest.fixture(scope="module")
def local_backend(model_store: list[str], tmp_path_factory: pytest.TempPathFactory) -> ThreadedClient:
    """The real models in this process (the data-plane tests put PostgreSQL and Redis around them)."""
    settings = get_settings().model_copy(update={"data_dir": tmp_path_factory.mktemp("models-data")})
    return ThreadedClient(InProcessClient(settings))


@pytest.fixture(scope="session")
def tiny_imagenet_val() -> list[tuple[str, bytes]]:
    """The first 500 Tiny-ImageNet val images (64x64 JPEGs) as (file name, bytes), from the mirror."""
    import itertools

    from services.index.build_gallery import tiny_imagenet_val as read_val

    root = get_settings().datasets_mirror_dir / "tiny-imagenet-200"
    if not root.is_dir():
        pytest.skip(f"Tiny-ImageNet mirror not found at {root} (set CV_DATASETS_MIRROR_DIR)")
    return [(meta["filename"], data) for data, meta in itertools.islice(read_val(root), 500)]
