"""Search, gallery, models, health and metrics in process."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.models.catalogue import MODEL_NAMES
from services.models.specs.lite0 import SERVED

pytestmark = pytest.mark.integration


def test_gallery_add_search_delete(client: TestClient, photos: dict[str, bytes]) -> None:
    start = client.get("/gallery").json()["size"]
    ids = {}
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        response = client.post(
            "/gallery", files={"image": (name, photos[name], "image/jpeg")}, data={"metadata": f'{{"name": "{name}"}}'}
        )
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    assert client.get("/gallery").json()["size"] == start + 3
    response = client.post(
        "/search", files={"image": ("q.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"top_k": "2"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"][0]["id"] == ids["chelsea.jpg"]
    assert body["results"][0]["score"] > 0.99
    assert body["results"][0]["metadata"]["name"] == "chelsea.jpg"
    assert len(body["results"]) == 2 and body["gallery_size"] == start + 3
    assert body["query_expansion"] == 0, "the production embedder searches with the query alone unless asked"
    expanded = client.post(
        "/search", files={"image": ("q.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"top_k": "2", "expand": "2"}
    ).json()
    assert expanded["query_expansion"] == 2 and expanded["results"][0]["id"] == ids["chelsea.jpg"]
    assert client.delete(f"/gallery/{ids['chelsea.jpg']}").status_code == 204
    assert client.delete(f"/gallery/{ids['chelsea.jpg']}").status_code == 404
    top = client.post("/search", files={"image": ("q.jpg", photos["chelsea.jpg"], "image/jpeg")}).json()
    assert ids["chelsea.jpg"] not in [r["id"] for r in top["results"]]


def test_gallery_rejects_non_object_metadata(client: TestClient, photos: dict[str, bytes]) -> None:
    for bad in ("[1, 2]", "{not json"):
        response = client.post(
            "/gallery", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}, data={"metadata": bad}
        )
        assert response.status_code == 422


def test_search_rejects_bad_top_k_and_expand(client: TestClient, photos: dict[str, bytes]) -> None:
    for field in ({"top_k": "0"}, {"expand": "51"}, {"expand": "-1"}):
        response = client.post("/search", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}, data=field)
        assert response.status_code == 422, field
        assert response.headers["content-type"] == "application/problem+json"


def test_models_lists_every_model_with_metadata(client: TestClient) -> None:
    body = client.get("/models").json()
    by_name = {m["model"]: m for m in body["models"]}
    assert set(by_name) == set(MODEL_NAMES)
    detector = by_name["detector"]
    assert detector["default_version"] == "v2"
    version = detector["versions"][0]
    assert version["stage"] == "production" and version["state"] == "ok"
    meta = version["metadata"]
    assert meta["input"]["color_order"] == "BGR" and meta["input"]["letterbox"]["pad_value"] == 114
    assert meta["num_labels"] == 80 and meta["sha256"]["fp32"]


def test_health_is_ok_when_every_model_is_loaded(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "live": True,
        "models": dict.fromkeys(MODEL_NAMES, "ok"),
    }


def test_metrics_use_route_templates(client: TestClient, photos: dict[str, bytes]) -> None:
    client.post("/classify", files={"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")})
    client.delete("/gallery/does-not-exist")
    text = client.get("/metrics").text
    assert 'cv_http_requests_total{method="POST",route="/api/v1/classify",status="200"}' in text
    assert 'route="/api/v1/gallery/{item_id}"' in text
    assert "does-not-exist" not in text
    assert f'cv_inference_stage_seconds_count{{model="classifier",stage="predict",version="{SERVED}"}}' in text
