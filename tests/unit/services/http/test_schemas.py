"""Response models: strict about fields, and absent fields stay absent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.http.schemas import ClassifyResponse, HealthResponse, ModelStatus, Problem, ResponseBody


def _subclasses(cls: type[ResponseBody]) -> list[type[ResponseBody]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _classify_body() -> dict[str, Any]:
    return {
        "predictions": [{"class_id": 30, "label": "tabby", "label_id": "n02123045", "score": 0.53}],
        "request_id": "r1",
        "model": {"name": "classifier", "version": "v2", "precision": "int8"},
        "experiment": None,
        "arm": None,
        "image": {"width": 451, "height": 300, "format": "JPEG", "sha256": "ab" * 32, "bytes": 20685},
        "cached": False,
        "timings_ms": {"decode": 1.0, "total": 2.0},
    }


@pytest.mark.parametrize("model", [m for m in _subclasses(ResponseBody) if m is not Problem], ids=lambda m: m.__name__)
def test_every_response_model_refuses_undeclared_fields_in_its_schema(model: type[ResponseBody]) -> None:
    assert model.model_json_schema(mode="serialization")["additionalProperties"] is False


def test_a_response_model_takes_a_real_body_as_it_is() -> None:
    body = _classify_body()
    assert ClassifyResponse.model_validate(body).model_dump(mode="json") == body


def test_a_response_model_refuses_an_undeclared_field() -> None:
    with pytest.raises(ValidationError, match="labels\n  Extra inputs are not permitted"):
        ClassifyResponse.model_validate({**_classify_body(), "labels": ["tabby"]})
    nested = _classify_body()
    nested["model"]["stage"] = "production"
    with pytest.raises(ValidationError, match=r"model\.stage\n  Extra inputs are not permitted"):
        ClassifyResponse.model_validate(nested)


def test_a_response_model_refuses_a_missing_field() -> None:
    body = _classify_body()
    del body["cached"]
    with pytest.raises(ValidationError, match="cached\n  Field required"):
        ClassifyResponse.model_validate(body)


def test_a_field_left_out_stays_out_and_is_never_null() -> None:
    body = _classify_body()
    del body["predictions"][0]["label_id"]
    assert ClassifyResponse.model_validate(body).model_dump(mode="json") == body
    body["predictions"][0]["label_id"] = None
    with pytest.raises(ValidationError, match="label_id"):
        ClassifyResponse.model_validate(body)
    assert "data" not in HealthResponse(status="ok", live=True, models={}).model_dump(mode="json")
    down = ModelStatus(model="detector", status="down", error="unreachable", versions=[]).model_dump(mode="json")
    assert down == {"model": "detector", "status": "down", "error": "unreachable", "versions": []}


def test_a_problem_keeps_its_extension_members() -> None:
    problem = {"type": "t", "title": "T", "status": 400, "detail": "d", "instance": "/i", "request_id": None, "x": 1}
    assert Problem.model_validate(problem).model_dump(mode="json") == problem
