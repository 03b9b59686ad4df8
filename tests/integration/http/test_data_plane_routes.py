"""Inference logs and the result cache through the real routes and models (SQLite and the in-process cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.clients.threaded import ThreadedClient
from services.config import get_settings
from services.http.dataplane import DataPlane
from services.models.specs.lite0 import SERVED
from tests.integration.http.apps import data_plane_client, logged_rows
from tests.unit.fakes import sample

pytestmark = pytest.mark.integration


@pytest.fixture
def app(backend: ThreadedClient, tmp_path: Path) -> Iterator[tuple[TestClient, DataPlane]]:
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "log_flush_interval_s": 60.0})
    with data_plane_client(backend, settings) as pair:
        yield pair


def _jpeg(photos: dict[str, bytes], name: str = "chelsea.jpg") -> dict[str, tuple[str, bytes, str]]:
    return {"image": (name, photos[name], "image/jpeg")}


def test_classify_is_logged_with_its_result_and_image(
    app: tuple[TestClient, DataPlane], photos: dict[str, bytes]
) -> None:
    client, plane = app
    response = client.post("/classify", files=_jpeg(photos), data={"top_k": "3"}, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200
    body = response.json()
    (row,) = logged_rows(plane, "req-1")
    assert (row.route, row.model, row.version, row.precision) == ("/api/v1/classify", "classifier", SERVED, "int8")
    assert row.status == 200 and row.error_type is None and row.cached is False
    assert row.top_label == body["predictions"][0]["label"] and row.top_score == pytest.approx(
        body["predictions"][0]["score"]
    )
    assert row.image_sha256 == body["image"]["sha256"] and row.image_bytes == len(photos["chelsea.jpg"])
    assert (row.image_width, row.image_height, row.image_format) == (451, 300, "JPEG")
    assert row.latency_ms > 0 and row.client_id is None and row.tier is None and row.box_count is None


def test_detect_and_search_are_logged(app: tuple[TestClient, DataPlane], photos: dict[str, bytes]) -> None:
    client, plane = app
    detect = client.post(
        "/detect", files={"image": ("a.png", photos["astronaut.png"], "image/png")}, headers={"X-Request-ID": "d"}
    )
    search = client.post("/search", files=_jpeg(photos), headers={"X-Request-ID": "s"})
    assert detect.status_code == 200 and search.status_code == 200
    (d,) = logged_rows(plane, "d")
    boxes = detect.json()["detections"]
    assert d.model == "detector" and d.box_count == len(boxes) and d.top_label == "person" and d.image_format == "PNG"
    (s,) = logged_rows(plane, "s")
    assert s.route == "/api/v1/search" and s.model == "embedder" and s.status == 200
    hits = search.json()["results"]
    assert s.top_label == (hits[0]["id"] if hits else None)


def test_batch_logs_one_row_per_image_with_its_own_status(
    app: tuple[TestClient, DataPlane], photos: dict[str, bytes]
) -> None:
    client, plane = app
    files = [
        ("images", ("chelsea.jpg", photos["chelsea.jpg"], "image/jpeg")),
        ("images", ("broken.jpg", photos["chelsea.jpg"][:2000], "image/jpeg")),
        ("images", ("coffee.jpg", photos["coffee.jpg"], "image/jpeg")),
    ]
    response = client.post("/batch", files=files, data={"task": "classify"}, headers={"X-Request-ID": "b"})
    assert response.status_code == 200
    rows = logged_rows(plane, "b")
    assert [(r.item_index, r.status, r.error_type) for r in rows] == [
        (0, 200, None),
        (1, 400, "invalid-image"),
        (2, 200, None),
    ]
    assert all(r.model == "classifier" and r.route == "/api/v1/batch" for r in rows)
    assert (
        rows[1].image_sha256 is None
        and rows[0].top_label == response.json()["items"][0]["result"]["predictions"][0]["label"]
    )


def test_refused_requests_are_logged_with_their_problem_type(
    app: tuple[TestClient, DataPlane], photos: dict[str, bytes]
) -> None:
    client, plane = app
    pinned = client.post("/classify", files=_jpeg(photos), data={"version": "v99"}, headers={"X-Request-ID": "v"})
    top_k = client.post("/classify", files=_jpeg(photos), data={"top_k": "0"}, headers={"X-Request-ID": "k"})
    torn = {"image": ("x.jpg", photos["chelsea.jpg"][:2000], "image/jpeg")}
    corrupt = client.post("/detect", files=torn, headers={"X-Request-ID": "i"})
    assert (pinned.status_code, top_k.status_code, corrupt.status_code) == (404, 422, 400)
    (version,) = logged_rows(plane, "v")
    assert (version.status, version.error_type, version.model) == (404, "version-not-found", "classifier")
    assert version.image_sha256 is not None  # the image was read before the model refused the version
    (param,) = logged_rows(plane, "k")
    assert (param.status, param.error_type, param.image_sha256) == (422, "invalid-parameter", None)
    (image,) = logged_rows(plane, "i")
    assert (image.status, image.error_type, image.model) == (400, "invalid-image", "detector")


def test_other_routes_are_not_logged(app: tuple[TestClient, DataPlane], photos: dict[str, bytes]) -> None:
    client, plane = app
    client.get("/health")
    client.get("/models")
    client.post("/gallery", files=_jpeg(photos))
    assert logged_rows(plane) == []


def test_repeated_image_is_a_cache_hit(app: tuple[TestClient, DataPlane], photos: dict[str, bytes]) -> None:
    client, plane = app
    hits = sample("cv_cache_hits_total", {"model": "classifier"})
    first = client.post("/classify", files=_jpeg(photos, "coffee.jpg"), headers={"X-Request-ID": "c1"})
    second = client.post("/classify", files=_jpeg(photos, "coffee.jpg"), headers={"X-Request-ID": "c2"})
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert second.json()["predictions"] == first.json()["predictions"]
    assert second.json()["model"] == first.json()["model"]
    assert set(second.json()["timings_ms"]) == {"decode", "cache", "total"}
    assert sample("cv_cache_hits_total", {"model": "classifier"}) == hits + 1
    assert [r.cached for r in logged_rows(plane, "c1") + logged_rows(plane, "c2")] == [False, True]
    third = client.post("/classify", files=_jpeg(photos, "coffee.jpg"), data={"top_k": "2"})
    assert third.headers["X-Cache"] == "miss"  # top_k changes the answer, so the key


def test_health_reports_the_log_sink_and_the_cache(app: tuple[TestClient, DataPlane]) -> None:
    client, _ = app
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["data"]["inference_log"]["status"] == "ok" and body["data"]["inference_log"]["backend"] == "sqlite"
    assert body["data"]["cache"]["status"] == "ok" and body["data"]["cache"]["backend"] == "memory"


def test_gateway_headers_are_recorded_only_when_trusted(
    backend: ThreadedClient, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    headers = {"X-Client-Id": "acme", "X-Tier": "pro", "X-Request-ID": "g"}
    for trusted in (False, True):
        settings = get_settings().model_copy(
            update={"data_dir": tmp_path / str(trusted), "trust_gateway_headers": trusted}
        )
        with data_plane_client(backend, settings) as (client, plane):
            client.post("/classify", files=_jpeg(photos), headers=headers)
            (row,) = logged_rows(plane, "g")
            assert (row.client_id, row.tier) == (("acme", "pro") if trusted else (None, None))


def test_cache_can_be_switched_off(backend: ThreadedClient, tmp_path: Path, photos: dict[str, bytes]) -> None:
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "cache_enabled": False})
    with data_plane_client(backend, settings) as (client, _):
        for _ in range(2):
            assert client.post("/classify", files=_jpeg(photos)).headers["X-Cache"] == "miss"
        assert client.get("/health").json()["data"]["cache"] == {"status": "ok", "backend": "off"}
