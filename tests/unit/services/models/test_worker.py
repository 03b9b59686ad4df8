"""ModelWorker: per-item params errors, grouping by version, poison items isolated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from kernel.logging import get_request_id
from services.config import ServingSettings, Stage
from services.models import worker as worker_module
from services.models.classification import ClassifyParams
from services.models.contract import Params
from services.models.registry import ModelPool
from services.models.runtime import OrtRunner
from services.models.spec import LoadedFiles
from services.models.worker import InferenceItem, ModelWorker, build_pool
from tests.unit.fakes import FakeFactory, FakeRunner, make_entry, make_spec, sample

LOGITS = [0.0, 1.0, 2.0]


def image(value: int = 0) -> np.ndarray:
    return np.full((8, 8, 3), value, dtype=np.uint8)


def is_poison(batch: np.ndarray) -> bool:
    """The identity spec keeps pixel values, so an all-255 image is all 255 in the batch."""
    return bool((batch.reshape(len(batch), -1) == 255).all(axis=1).any())


def pool(name: str, *versions: str, runners: dict[tuple[str, str], FakeRunner] | None = None) -> ModelPool:
    entries = [make_entry(name=name, version=v, labels=["a", "b", "c"]) for v in versions]
    return ModelPool(name, entries, FakeFactory(runners or {}))  # type: ignore[arg-type]


# --- InferenceItem ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((8, 8, 3), dtype=np.float32),
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((1, 8, 8, 3), dtype=np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["float32", "2-d", "rgba", "4-d", "list"],
)
def test_inference_item_rejects_non_rgb_uint8_arrays(value: object) -> None:
    with pytest.raises(ValidationError, match="H x W x 3 uint8"):
        InferenceItem(image=value)  # type: ignore[arg-type]


def test_inference_item_keeps_valid_array_as_is() -> None:
    pixels = image(7)
    item = InferenceItem(image=pixels, params={"top_k": 2}, version="v1", request_id="r")
    assert item.image is pixels
    assert item.params == {"top_k": 2}


def test_inference_item_json_schema_describes_image() -> None:
    image = InferenceItem.model_json_schema()["properties"]["image"]
    assert image["type"] == "object" and image["required"] == ["shape", "data"]


# --- run -------------------------------------------------------------------------------------


def test_run_invalid_params_fail_alone_with_422() -> None:
    runner = FakeRunner(LOGITS)
    worker = ModelWorker(pool("w-params", "v1", runners={("v1", "fp32"): runner}))
    items = [
        InferenceItem(image=image(), params={"top_k": 1}),
        InferenceItem(image=image(), params={"top_k": 0}),
        InferenceItem(image=image(), params={"nonsense": True}),
        InferenceItem(image=image()),
    ]
    outcomes = worker.run(items)
    assert [o.error["type"] if o.error else "ok" for o in outcomes] == [
        "ok",
        "invalid-parameter",
        "invalid-parameter",
        "ok",
    ]
    assert outcomes[1].error is not None and "top_k" in outcomes[1].error["detail"]
    assert outcomes[2].error is not None and "nonsense" in outcomes[2].error["detail"]
    assert outcomes[0].prediction is not None and len(outcomes[0].prediction.result["predictions"]) == 1
    assert outcomes[3].prediction is not None and len(outcomes[3].prediction.result["predictions"]) == 3
    assert [len(b) for b in runner.batches] == [2]  # the invalid items never reached the model


def test_run_single_item_with_invalid_params_gets_422() -> None:
    worker = ModelWorker(pool("w-params-alone", "v1"))
    (outcome,) = worker.run([InferenceItem(image=image(), params={"top_k": 0})])
    assert outcome.error is not None and outcome.error["type"] == "invalid-parameter"


def test_run_invalid_item_alone_in_its_version_group_does_not_fail_the_batch() -> None:
    worker = ModelWorker(pool("w-params-group", "v1"))
    outcomes = worker.run(
        [InferenceItem(image=image()), InferenceItem(image=image(), version="v1", params={"top_k": 0})]
    )
    assert outcomes[0].prediction is not None
    assert outcomes[1].error is not None and outcomes[1].error["type"] == "invalid-parameter"


def test_run_groups_items_by_version() -> None:
    v1, v2 = FakeRunner(LOGITS), FakeRunner(LOGITS)
    worker = ModelWorker(pool("w-group", "v1", "v2", runners={("v1", "fp32"): v1, ("v2", "fp32"): v2}))
    items = [
        InferenceItem(image=image(), version="v1"),
        InferenceItem(image=image(), version="v2"),
        InferenceItem(image=image(), version="v1"),
        InferenceItem(image=image()),  # default: v2, the newest production version
    ]
    outcomes = worker.run(items)
    assert [o.prediction.version for o in outcomes if o.prediction] == ["v1", "v2", "v1", "v2"]
    assert [len(b) for b in v1.batches] == [2]
    assert [len(b) for b in v2.batches] == [1, 1]  # "v2" and the default are separate groups


def test_run_poison_item_fails_alone() -> None:
    name = "w-poison"
    runner = FakeRunner(LOGITS, fail_when=is_poison)
    worker = ModelWorker(pool(name, "v1", runners={("v1", "fp32"): runner}))
    before = sample("cv_inference_items_total", {"model": name, "version": "default", "outcome": "error"})
    outcomes = worker.run(
        [InferenceItem(image=image(1)), InferenceItem(image=image(255)), InferenceItem(image=image(2))]
    )
    assert outcomes[0].prediction is not None
    assert outcomes[2].prediction is not None
    assert outcomes[1].prediction is None
    assert outcomes[1].error is not None and outcomes[1].error["type"] == "model-unavailable"
    # One failed batch of three, then each item alone.
    assert [len(b) for b in runner.batches] == [3, 1, 1, 1]
    assert sample("cv_inference_items_total", {"model": name, "version": "default", "outcome": "error"}) == before + 1


def test_run_unknown_version_fails_its_group_without_retrying() -> None:
    runner = FakeRunner(LOGITS)
    worker = ModelWorker(pool("w-404", "v1", runners={("v1", "fp32"): runner}))
    outcomes = worker.run(
        [
            InferenceItem(image=image(), version="v9"),
            InferenceItem(image=image(), version="v9"),
            InferenceItem(image=image()),
        ]
    )
    assert [o.error["type"] if o.error else "ok" for o in outcomes] == ["version-not-found", "version-not-found", "ok"]
    assert [len(b) for b in runner.batches] == [1]


def test_run_binds_request_id_of_group_and_resets_it() -> None:
    seen: list[str | None] = []

    def record(batch: np.ndarray) -> np.ndarray:
        seen.append(get_request_id())
        return np.zeros((len(batch), 3), np.float32)

    worker = ModelWorker(pool("w-rid", "v1", runners={("v1", "fp32"): FakeRunner(fn=record)}))
    worker.run([InferenceItem(image=image(), request_id="req-1"), InferenceItem(image=image(), request_id="req-2")])
    assert seen == ["req-1"]
    assert get_request_id() is None


def test_run_on_empty_pool_answers_every_item_with_503() -> None:
    worker = ModelWorker(pool("w-empty"))
    assert worker.params_type() is Params
    outcomes = worker.run([InferenceItem(image=image()), InferenceItem(image=image())])
    assert [o.error["type"] if o.error else "ok" for o in outcomes] == ["model-unavailable"] * 2


def test_run_on_empty_pool_answers_503_even_with_the_familys_parameters() -> None:
    # Not a 422 "top_k: Extra inputs are not permitted": with nothing loaded the family's parameters are unknown.
    outcomes = ModelWorker(pool("w-empty-params")).run([InferenceItem(image=image(), params={"top_k": 3})])
    assert outcomes[0].error is not None
    assert outcomes[0].error["type"] == "model-unavailable"
    assert "no version of w-empty-params is loaded" in outcomes[0].error["detail"]


def test_params_type_comes_from_the_family() -> None:
    assert ModelWorker(pool("w-ptype", "v1")).params_type() is ClassifyParams


def test_run_empty_batch_returns_empty_list() -> None:
    assert ModelWorker(pool("w-none", "v1")).run([]) == []


def test_run_ignores_versions_of_unknown_family() -> None:
    entries = [
        make_entry(name="w-unknown", version="v2", arch="not-registered"),
        make_entry(name="w-unknown", version="v1", stage=Stage.CANARY),
    ]
    worker = ModelWorker(ModelPool("w-unknown", entries, FakeFactory()))
    (outcome,) = worker.run([InferenceItem(image=image())])
    assert outcome.prediction is not None and outcome.prediction.version == "v1"


# --- build_pool ------------------------------------------------------------------------------


def test_build_pool_loads_store_entries_on_onnx_runtime(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(name="tiny", version="v1", labels=["r", "g", "b"])
    spec.output_name = "out"
    spec.input.name = "images"
    monkeypatch.setattr(
        worker_module, "list_versions", lambda name: [LoadedFiles(spec=spec, paths={"fp32": tiny_onnx})]
    )
    settings = ServingSettings(
        _env_file=None,  # type: ignore[call-arg]
        ort_providers=["CPUExecutionProvider"],
        ort_intra_op_threads=1,
        default_versions={"tiny": "v1"},
        prefer_int8=False,
        max_loaded_versions=1,
        ort_cpu_mem_arena=False,
        ort_cpu_max_batch=4,
        ort_cpu_max_batch_per_model={"tiny": 3},
    )
    built = build_pool("tiny", settings)
    assert built.pinned_default == "v1"
    assert built.prefer_int8 is False
    model = built.versions["v1"].models["fp32"]
    assert isinstance(model.runner, OrtRunner)
    options = model.runner.session.get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern) == (False, True)  # as the settings say
    assert model.runner.max_batch == 3  # this model's own CPU slice, over the default 4
    # The tiny graph returns per-channel means: a blue image is class "b".
    blue = np.zeros((8, 8, 3), dtype=np.uint8)
    blue[..., 2] = 200
    (outcome,) = ModelWorker(built).run([InferenceItem(image=blue, params={"top_k": 1})])
    assert outcome.prediction is not None
    assert outcome.prediction.result["predictions"][0]["label"] == "b"


def test_build_pool_with_wrong_output_name_is_down(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(name="tiny-bad", version="v1")
    spec.output_name = "logits"
    monkeypatch.setattr(
        worker_module, "list_versions", lambda name: [LoadedFiles(spec=spec, paths={"fp32": tiny_onnx})]
    )
    built = build_pool("tiny-bad", ServingSettings(_env_file=None, ort_providers=["CPUExecutionProvider"]))  # type: ignore[call-arg]
    assert built.status()["status"] == "down"
    assert "has no output 'logits'" in built.versions["v1"].errors["fp32"]


def test_items_travel_as_json_to_services_deployed_apart() -> None:
    """A main BentoML server takes JSON only: the pixels go as shape + base64 and come back the same array."""
    pixels = np.random.default_rng(1).integers(0, 255, (7, 5, 3), dtype=np.uint8)[:, ::-1]  # not contiguous
    item = InferenceItem(image=pixels, params={"top_k": 1}, request_id="r")
    as_json = item.model_dump_json()
    assert '"shape":[7,5,3]' in as_json
    back = InferenceItem.model_validate_json(as_json)
    assert back.image.dtype == np.uint8 and np.array_equal(back.image, pixels)
    assert isinstance(item.model_dump()["image"], np.ndarray)  # the pickle path keeps the array


@pytest.mark.parametrize(
    "image",
    [
        {"shape": [2, 2, 3], "data": "AAAA"},  # 3 bytes for 12 pixels' worth
        {"shape": [1, 1, 3], "data": "not base64!"},
        {"data": "AAAA"},
        {"shape": [1, 1], "data": "AAA="},  # 2 dimensions
    ],
)
def test_malformed_json_pixels_are_refused(image: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="image"):
        InferenceItem.model_validate({"image": image})
