"""The inference log's hand-off to the log writer: a failing writer never fails the request."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.config import ServingSettings
from services.experiments.snapshot import ExperimentBook
from services.http.app import create_app
from services.http.recording import RecordingClient
from tests.unit.services.http.test_caching import FakeModels
from tests.unit.services.shadow.fakes import Writer


class Plane:
    def __init__(self, writer: Writer) -> None:
        self.log_writer = writer
        self.mirror = None
        self.experiments = ExperimentBook(lambda: [], refresh_s=60.0)  # none running

    async def health(self) -> dict[str, Any]:
        return {
            "inference_log": {"status": "ok", "backend": "sqlite", "buffered": 0, "spooled": 0},
            "cache": {"status": "degraded", "backend": "redis"},
        }


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def client(plane: Plane, **settings: Any) -> TestClient:
    models = RecordingClient(FakeModels())  # type: ignore[arg-type]  # as DataPlane.wrap wraps the client
    app = create_app(
        ServingSettings(_env_file=None, **settings),  # type: ignore[arg-type]
        backend=lambda: models,
        data_plane=lambda: plane,  # type: ignore[arg-type,return-value]
    )
    return TestClient(app)


def test_a_failing_log_writer_does_not_fail_the_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="services.http"):
        response = client(Plane(Writer(RuntimeError("bug")))).post(
            "/classify", files={"image": ("x.png", png(), "image/png")}
        )
    assert response.status_code == 200
    assert "inference log record failed" in caplog.messages


def test_gateway_headers_are_cut_to_the_column_sizes() -> None:
    writer = Writer()
    headers = {"X-Client-Id": "c" * 500, "X-Tier": "t" * 100}
    client(Plane(writer), trust_gateway_headers=True).post(
        "/classify", files={"image": ("x.png", png(), "image/png")}, headers=headers
    )
    (record,) = writer.records
    assert record.client_id == "c" * 128 and record.tier == "t" * 32
    assert record.top_label == "v1-answer" and record.image_format == "PNG"


def test_health_is_degraded_when_the_cache_is() -> None:
    body = client(Plane(Writer())).get("/health").json()
    assert body["status"] == "degraded" and body["models"]["classifier"] == "ok"
    assert body["data"]["cache"]["status"] == "degraded"
