"""The SDK and the ``cv`` command against the real server on loopback (the session's `bentoml serve`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cv_client
from cv_client.cli import main
from services.models.catalogue import MODEL_NAMES
from tests.integration.server import Server
from tests.labels import CATS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(server: Server) -> cv_client.Client:
    return cv_client.Client(server.url, timeout=60)


def test_classify_a_real_photo(client: cv_client.Client, photos: dict[str, bytes]) -> None:
    result = client.classify(photos["chelsea.jpg"], top_k=3)
    assert result.top1 is not None and result.top1.label in CATS
    assert len(result.predictions) == 3 and result.model.name == "classifier" and result.request_id


def test_detect_a_real_photo_and_draw_it(client: cv_client.Client, photos: dict[str, bytes]) -> None:
    image = Image.open(io.BytesIO(photos["astronaut.png"]))
    result = client.detect(np.asarray(image))  # a NumPy array, sent as PNG
    assert result.detections and result.detections[0].label == "person"
    drawn = np.asarray(result.draw(image)).astype(int)
    assert (drawn != np.asarray(image.convert("RGB")).astype(int)).any()


def test_a_corrupt_image_is_a_bad_request_with_its_problem(client: cv_client.Client, photos: dict[str, bytes]) -> None:
    with pytest.raises(cv_client.BadRequest) as caught:
        client.detect(photos["chelsea.jpg"][:500])
    assert caught.value.status == 400 and caught.value.slug == "invalid-image"
    assert caught.value.request_id and caught.value.instance == "/api/v1/detect"


def test_inline_batch_and_the_gallery(client: cv_client.Client, photos: dict[str, bytes]) -> None:
    batch = client.batch([photos["chelsea.jpg"], b"not an image"], "classify", top_k=1)
    assert batch.count == 2 and batch.succeeded == 1
    assert batch.items[1].error is not None and batch.items[1].status in (400, 415)
    added = client.gallery_add(photos["rocket.jpg"], metadata={"kind": "rocket"})
    try:
        hits = client.search(photos["rocket.jpg"], top_k=1)
        assert hits.results[0].id == added.id and hits.results[0].metadata["kind"] == "rocket"
        assert client.gallery_size().size >= 1
    finally:
        client.gallery_remove(added.id)
    with pytest.raises(cv_client.NotFound):
        client.gallery_remove(added.id)


def test_models_and_health(client: cv_client.Client) -> None:
    assert {m.model for m in client.models().models} == set(MODEL_NAMES)
    health = client.health()
    assert health.status == "ok" and health.live


def test_cli_draws_the_detections(
    server: Server, photos: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(photos["astronaut.png"])
    out = tmp_path / "annotated.jpg"
    assert main(["--url", server.url, "detect", str(photo), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["detections"][0]["label"] == "person"
    assert Image.open(out).size == Image.open(photo).size
