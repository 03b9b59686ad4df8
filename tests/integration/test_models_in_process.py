"""`make serve`'s default (CV_MODELS_IN_PROCESS unset, local mode, no model URL): `bentoml serve services.api:Api`
starts no model service and answers from the api (docs/adr/0014-models-in-the-api-process-on-one-box.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.server import Server, start_server
from tests.labels import CATS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def one_process_server(
    model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("in-process-data")
    env: dict[str, str | None] = {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data), "CV_MODELS_IN_PROCESS": None}
    running = start_server(data / "server.log", env)
    yield running
    running.stop()


def test_no_model_service_is_started(one_process_server: Server) -> None:
    tree = psutil.Process(one_process_server.process.pid).children(recursive=True)
    commands = [" ".join(proc.cmdline()) for proc in tree]
    assert not [c for c in commands if "--service-name classifier" in c or "--service-name detector" in c], commands


def test_classify_and_detect_answer_from_the_api_process(one_process_server: Server, photos: dict[str, bytes]) -> None:
    url = f"{one_process_server.url}/api/v1"
    image = {"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}
    classified = httpx.post(f"{url}/classify", files=image, data={"top_k": "3"}, timeout=60)
    assert classified.status_code == 200, classified.text
    assert classified.json()["predictions"][0]["label"] in CATS
    assert classified.headers["X-Request-ID"]
    detected = httpx.post(f"{url}/detect", files={"image": ("a.png", photos["astronaut.png"], "image/png")}, timeout=60)
    assert detected.status_code == 200, detected.text
    assert detected.json()["detections"][0]["label"] == "person"
    health = httpx.get(f"{url}/health", timeout=30)
    assert health.status_code == 200, health.text
