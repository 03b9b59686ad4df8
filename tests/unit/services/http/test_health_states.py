"""/health and /models when model services are degraded or unreachable."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from kernel.errors import ModelUnavailable
from services.config import get_settings
from services.http.app import create_app
from services.models.catalogue import MODEL_NAMES


class StatusBackend:
    def __init__(self, states: dict[str, Any]) -> None:
        self.states = states

    async def status(self, model: str) -> dict[str, Any]:
        state = self.states[model]
        if isinstance(state, Exception):
            raise state
        return {"model": model, "status": state, "versions": []}


def _client(states: dict[str, Any]) -> TestClient:
    backend = StatusBackend(states)
    return TestClient(create_app(get_settings(), backend=lambda: backend))  # type: ignore[arg-type,return-value]


def test_health_is_degraded_when_one_model_is_degraded_or_down() -> None:
    client = _client(dict.fromkeys(MODEL_NAMES, "ok") | {"detector": "degraded", "embedder": ModelUnavailable("x")})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["models"] == dict.fromkeys(MODEL_NAMES, "ok") | {"detector": "degraded", "embedder": "down"}


def test_health_is_503_when_nothing_can_serve() -> None:
    client = _client({name: ModelUnavailable("x") for name in MODEL_NAMES})
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["status"] == "down"
    models = client.get("/models").json()["models"]
    assert all(m["status"] == "down" and m["error"] for m in models)
