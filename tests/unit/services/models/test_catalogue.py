"""The model catalogue: one entry per served model, consistent with the registry and the routes."""

from __future__ import annotations

import pytest

from services.models.catalogue import CATALOGUE, JOB_TASKS, MODEL_NAMES, UnknownModel, entry, model_for_task
from services.models.registry import FAMILIES


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_every_entry_has_a_family_for_its_task(item) -> None:
    assert any(task == item.task for task, _ in FAMILIES)


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_every_entry_names_a_service_class_in_a_module(item) -> None:
    assert item.service_module.startswith("services.") and item.service_class.endswith("Service")
    assert item.url_env == f"CV_{item.name.upper()}_URL"


def test_names_and_routes_are_unique() -> None:
    assert len(set(MODEL_NAMES)) == len(CATALOGUE) == len({e.route for e in CATALOGUE})


def test_batch_tasks_map_to_their_models() -> None:
    assert JOB_TASKS == {"classify": "classifier", "detect": "detector"}
    assert model_for_task("detect") == "detector"


def test_an_unknown_name_or_task_is_a_named_error() -> None:
    with pytest.raises(UnknownModel, match="segmenter"):
        entry("segmenter")
    with pytest.raises(UnknownModel, match="search"):
        model_for_task("search")
