"""services/http/inference.py ``answered``: the bytes FastAPI's ``response_model`` path wrote, without that path."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from services.http.inference import answered
from services.http.schemas import ClassifyResponse, DetectResponse, TaskAnswer

COMMON: dict[str, Any] = {
    "request_id": "r-1",
    "model": {"name": "classifier", "version": "v8", "precision": "int8"},
    "experiment": None,
    "arm": "b",
    "image": {"width": 451, "height": 300, "format": "JPEG", "sha256": "ab" * 32, "bytes": 35042},
    "cached": False,
    "timings_ms": {"decode": 0.81, "predict": 2.5, "total": 1e-05},
}
CLASSIFY = COMMON | {
    "predictions": [
        {"class_id": 3, "label": "tabby", "label_id": "n02123045", "score": 0.52},
        {"class_id": 7, "label": "no id", "score": 1e-05},  # label_id MISSING: left out of the body
    ]
}
DETECT = COMMON | {
    "model": {"name": "detector", "version": "v1", "precision": "int8"},
    "cached": True,
    "detections": [
        {"box": {"x1": 0.0, "y1": 1.5, "x2": 10.25, "y2": 3e-06}, "class_id": 0, "label": "p", "score": 0.9}
    ],
}


ROUTES: dict[str, tuple[type[TaskAnswer], dict[str, Any], dict[str, str]]] = {
    "classify": (ClassifyResponse, CLASSIFY, {"X-Model-Version": "classifier:v8", "X-Cache": "miss"}),
    "detect": (DetectResponse, DETECT, {"X-Model-Version": "detector:v1", "X-Cache": "hit"}),
}


def _endpoints(schema: type[TaskAnswer], body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The body returned the old way (the model, headers set on the injected response) and the new way."""

    async def old(response: Response) -> Any:
        response.headers.update(headers)
        return schema.model_validate(body)

    async def new() -> JSONResponse:
        return answered(schema.model_validate(body))

    return {"old": old, "new": new}


def _app() -> FastAPI:
    app = FastAPI()
    for route, (schema, body, headers) in ROUTES.items():
        for way, endpoint in _endpoints(schema, body, headers).items():
            app.add_api_route(f"/{way}/{route}", endpoint, response_model=schema, response_class=JSONResponse)
    return app


def test_answered_writes_what_the_response_model_path_wrote() -> None:
    client = TestClient(_app())
    for route in ("classify", "detect"):
        old, new = client.get(f"/old/{route}"), client.get(f"/new/{route}")
        assert new.status_code == old.status_code == 200
        assert new.content == old.content
        for header in ("content-type", "content-length", "x-model-version", "x-cache"):
            assert new.headers[header] == old.headers[header]
    body = client.get("/new/classify").json()
    assert "label_id" not in body["predictions"][1]
    assert body["timings_ms"]["total"] == 1e-05
    assert b"1e-05" in client.get("/new/classify").content  # json.dumps' spelling, not pydantic's 0.00001
