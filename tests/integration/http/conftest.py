"""The public API in process: the real FastAPI app over the real models (the in-process model client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from services.clients.inprocess import InProcessClient
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from services.http.app import create_app


@pytest.fixture(scope="module")
def backend(model_store: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedClient]:
    settings = get_settings().model_copy(update={"data_dir": tmp_path_factory.mktemp("data")})
    yield ThreadedClient(InProcessClient(settings))


@pytest.fixture(scope="module")
def client(backend: ThreadedClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = get_settings().model_copy(update={"data_dir": Path(tmp_path_factory.mktemp("data2"))})
    app = create_app(settings, backend=lambda: backend)
    # Mounted as the api service mounts it, so paths and route templates match production.
    parent = Starlette(routes=[Mount("/api/v1", app=app)])
    parent.state.settings = settings
    with TestClient(parent, base_url="http://testserver/api/v1", raise_server_exceptions=False) as test_client:
        yield test_client
