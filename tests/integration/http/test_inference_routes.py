"""POST /classify, /detect, /batch in process, with real models and real photos."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.models.specs.lite0 import SERVED
from tests.conftest import encode
from tests.labels import CATS

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def test_classify_chelsea_names_a_cat_first(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/classify", files={"image": ("chelsea.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"top_k": "3"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"][0]["label"] in CATS
    assert len(body["predictions"]) == 3
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == {"name": "classifier", "version": SERVED, "precision": "int8"}  # CV_PREFER_INT8
    assert body["image"]["width"] == 451 and body["image"]["height"] == 300
    assert response.headers["X-Model-Version"] == f"classifier:{SERVED}"
    assert set(body["timings_ms"]) >= {"decode", "preprocess", "predict", "postprocess", "total"}


def test_classify_echoes_the_callers_request_id(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/classify",
        files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")},
        headers={"X-Request-ID": "trace-abc-123"},
    )
    assert response.headers["X-Request-ID"] == "trace-abc-123"
    assert response.json()["request_id"] == "trace-abc-123"


def test_classify_makes_a_request_id_when_none_is_sent(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post("/classify", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")})
    assert len(response.headers["X-Request-ID"]) == 32


def test_detect_astronaut_finds_a_person_in_original_pixels(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post("/detect", files={"image": ("a.png", photos["astronaut.png"], "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    people = [d for d in body["detections"] if d["label"] == "person"]
    assert people and people[0]["score"] > 0.5
    box = people[0]["box"]
    assert 0 <= box["x1"] < box["x2"] <= 512 and 0 <= box["y1"] < box["y2"] <= 512
    assert box["y2"] - box["y1"] > 300  # the astronaut fills most of the 512 px height


def test_detect_classes_filter_keeps_only_those_classes(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/detect",
        files={"image": ("a.png", photos["astronaut.png"], "image/png")},
        data={"classes": "2,3", "confidence": "0.01"},
    )
    assert response.status_code == 200
    assert all(d["class_id"] in (2, 3) for d in response.json()["detections"])


def test_detect_rejects_malformed_classes(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/detect", files={"image": ("a.png", photos["astronaut.png"], "image/png")}, data={"classes": "person"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_detect_rejects_out_of_range_confidence(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/detect", files={"image": ("a.png", photos["astronaut.png"], "image/png")}, data={"confidence": "1.5"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("invalid-parameter") and "confidence" in body["detail"]


def test_classify_unknown_version_is_404(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/classify", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"version": "v99"}
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("version-not-found")


def test_classify_pinned_version_answers(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/classify", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"version": SERVED}
    )
    assert response.status_code == 200
    assert response.json()["model"]["version"] == SERVED


def test_an_archived_version_is_not_loaded_so_pinning_it_is_404(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post(
        "/classify", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"version": "v1"}
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("version-not-found")


def test_classify_without_image_is_422(client: TestClient) -> None:
    response = client.post("/classify", data={"top_k": "3"})
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == 422 and "image" in body["detail"] and body["request_id"]


def test_batch_answers_each_item_and_isolates_a_corrupt_one(client: TestClient, photos: dict[str, bytes]) -> None:
    files = [
        ("images", ("chelsea.jpg", photos["chelsea.jpg"], "image/jpeg")),
        ("images", ("broken.jpg", photos["chelsea.jpg"][:2000], "image/jpeg")),
        ("images", ("coffee.jpg", photos["coffee.jpg"], "image/jpeg")),
    ]
    response = client.post("/batch", files=files, data={"task": "classify", "top_k": "1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 3 and body["succeeded"] == 2
    statuses = [item["status"] for item in body["items"]]
    assert statuses == [200, 400, 200]
    assert body["items"][0]["result"]["predictions"][0]["label"] in CATS
    assert body["items"][1]["error"]["type"].endswith("invalid-image")


def test_batch_detect(client: TestClient, photos: dict[str, bytes]) -> None:
    files = [("images", (name, photos[name], "application/octet-stream")) for name in ("astronaut.png", "rocket.jpg")]
    response = client.post("/batch", files=files, data={"task": "detect"})
    assert response.status_code == 200
    assert [item["status"] for item in response.json()["items"]] == [200, 200]


def test_batch_over_the_inline_limit_is_413(client: TestClient) -> None:
    tiny = encode(np.zeros((8, 8, 3), np.uint8), "PNG")
    limit = client.app.state.settings.max_batch_items  # type: ignore[attr-defined]
    files = [("images", (f"{i}.png", tiny, "image/png")) for i in range(limit + 1)]
    response = client.post("/batch", files=files, data={"task": "classify"})
    assert response.status_code == 413


def test_batch_unknown_task_is_422(client: TestClient, photos: dict[str, bytes]) -> None:
    files = [("images", ("c.jpg", photos["chelsea.jpg"], "image/jpeg"))]
    response = client.post("/batch", files=files, data={"task": "segment"})
    assert response.status_code == 422
