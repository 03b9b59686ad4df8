"""One real server on loopback for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server import Server, start_server


@pytest.fixture(scope="session")
def server(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("server-data")
    running = start_server(data / "server.log", {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data)})
    yield running
    running.stop()
