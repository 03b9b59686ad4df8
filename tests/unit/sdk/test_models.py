"""The SDK's result models against the server's response bodies (services/http/schemas.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from cv_client import models as sdk
from services.http import schemas as server
from tests.unit.sdk import bodies

PAIRS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (sdk.ModelRef, server.ModelRef),
    (sdk.ImageInfo, server.ImageInfo),
    (sdk.ClassPrediction, server.ClassPrediction),
    (sdk.Box, server.Box),
    (sdk.Detection, server.Detection),
    (sdk.ClassifyResult, server.ClassifyResponse),
    (sdk.DetectResult, server.DetectResponse),
    (sdk.Problem, server.Problem),
    (sdk.SearchHit, server.SearchHit),
    (sdk.SearchResult, server.SearchResponse),
    (sdk.GalleryItem, server.GalleryItemResponse),
    (sdk.GallerySize, server.GallerySizeResponse),
    (sdk.BatchItem, server.BatchItem),
    (sdk.BatchResult, server.BatchResponse),
    (sdk.JobItem, server.JobItem),
    (sdk.JobCounts, server.JobCounts),
    (sdk.Job, server.JobResponse),
    (sdk.ExperimentArm, server.ExperimentArm),
    (sdk.ExperimentSummary, server.ExperimentSummary),
    (sdk.ExperimentsResult, server.ExperimentsResponse),
    (sdk.ExperimentResult, server.ExperimentResponse),
    (sdk.FeedbackResult, server.FeedbackResponse),
    (sdk.ModelVersionStatus, server.ModelVersionStatus),
    (sdk.ModelStatus, server.ModelStatus),
    (sdk.ModelsResult, server.ModelsResponse),
    (sdk.LogSinkHealth, server.LogSinkHealth),
    (sdk.CacheHealth, server.CacheHealth),
    (sdk.JobsHealth, server.JobsHealth),
    (sdk.HealthData, server.HealthData),
    (sdk.HealthResult, server.HealthResponse),
    (sdk.DriftTestResult, server.DriftTestResult),
    (sdk.DriftReport, server.DriftResponse),
]


@pytest.mark.parametrize(("mine", "theirs"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_sdk_model_has_the_server_fields_in_order(mine: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert list(mine.model_fields) == list(theirs.model_fields)
    # A field the server may leave out is optional in the SDK; one it always sends is required in both.
    for name, field in theirs.model_fields.items():
        assert mine.model_fields[name].is_required() == field.is_required(), name


def test_every_server_response_body_has_an_sdk_model() -> None:
    bodies_of_server = {
        cls
        for cls in vars(server).values()
        if isinstance(cls, type) and issubclass(cls, server.ResponseBody) and cls is not server.ResponseBody
    }
    assert bodies_of_server == {theirs for _, theirs in PAIRS}


SAMPLES: list[tuple[Callable[[], dict[str, Any]], type[BaseModel], type[BaseModel]]] = [
    (bodies.classify, sdk.ClassifyResult, server.ClassifyResponse),
    (bodies.detect, sdk.DetectResult, server.DetectResponse),
    (bodies.search, sdk.SearchResult, server.SearchResponse),
    (bodies.gallery_item, sdk.GalleryItem, server.GalleryItemResponse),
    (bodies.batch, sdk.BatchResult, server.BatchResponse),
    (lambda: bodies.job("succeeded", items=[bodies.job_item(0)]), sdk.Job, server.JobResponse),
    (lambda: {"experiments": [bodies.experiment()]}, sdk.ExperimentsResult, server.ExperimentsResponse),
    (lambda: bodies.experiment({"arms": []}), sdk.ExperimentResult, server.ExperimentResponse),
    (bodies.feedback, sdk.FeedbackResult, server.FeedbackResponse),
    (bodies.models, sdk.ModelsResult, server.ModelsResponse),
    (bodies.health, sdk.HealthResult, server.HealthResponse),
    (bodies.drift, sdk.DriftReport, server.DriftResponse),
]


@pytest.mark.parametrize(("body", "mine", "theirs"), SAMPLES, ids=[s[1].__name__ for s in SAMPLES])
def test_a_body_the_server_accepts_parses_into_the_sdk_model(
    body: Callable[[], dict[str, Any]], mine: type[BaseModel], theirs: type[BaseModel]
) -> None:
    sent = theirs.model_validate(body()).model_dump(mode="json")
    assert mine.model_validate(sent).model_dump(mode="json", exclude_none=True) == _without_none(sent)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def test_batch_items_parse_into_the_task_result_or_a_problem() -> None:
    result = sdk.BatchResult.model_validate(bodies.batch())
    assert isinstance(result.items[0].result, sdk.ClassifyResult)
    assert result.items[1].error is not None and result.items[1].error.status == 400


def test_unknown_fields_from_a_newer_server_are_ignored() -> None:
    result = sdk.ClassifyResult.model_validate({**bodies.classify(), "new_field": 1})
    assert not hasattr(result, "new_field")


def test_top1_is_the_first_prediction_or_none() -> None:
    result = sdk.ClassifyResult.model_validate(bodies.classify())
    assert result.top1 is not None and result.top1.label == "tabby"
    assert result.model_copy(update={"predictions": []}).top1 is None
