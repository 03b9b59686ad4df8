"""The Lite0 specs: the committed INT8 file is registered next to FP32 when its report vouches for it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.config import Stage
from services.models.specs import lite0
from services.models.store import sha256_file

REPO = Path(__file__).resolve().parents[5]
EXPORT = REPO / "artifacts" / lite0.EXPORT_DIR


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """A copy of the committed export (FP32 file, export.json, labels) without any INT8 file."""
    folder = tmp_path / lite0.EXPORT_DIR
    folder.mkdir()
    for name in ("model.onnx", "export.json", "labels.json"):
        shutil.copyfile(EXPORT / name, folder / name)
    return tmp_path


def _chosen(int8: Path) -> dict:
    return {"name": "minmax_per_channel", "sha256": sha256_file(int8), "precision_at_10": 0.61,
            "delta_precision_at_10": -0.004, "calibration_images": 256}  # fmt: skip


def _spec(artifacts: Path, task: str = "embedding") -> tuple:
    return lite0.lite0_spec(artifacts, name=task, task=task, version="v1")  # type: ignore[arg-type]


def test_without_an_int8_file_the_entry_is_fp32_only(artifacts: Path) -> None:
    spec, files = _spec(artifacts)
    assert spec.files == {"fp32": "model.onnx"} and set(files) == {"fp32"}
    assert "int8" not in spec.metrics


@pytest.mark.parametrize("task", ["embedding", "classification"])
def test_the_int8_file_is_registered_with_its_metrics(artifacts: Path, task: str) -> None:
    folder = artifacts / lite0.EXPORT_DIR
    int8 = folder / lite0.INT8_FILE
    int8.write_bytes(b"an int8 file")
    (folder / lite0.QUANTIZATION_REPORT).write_text(json.dumps({"chosen": _chosen(int8)}))
    spec, files = _spec(artifacts, task)
    assert spec.files == {"fp32": "model.onnx", "int8": "model.int8.onnx"} and files["int8"] == int8
    assert spec.metrics["int8"] == {
        "tiny_imagenet_val_precision_at_10": 0.61,
        "delta_precision_at_10_vs_fp32": -0.004,
        "calibration": "256 Tiny-ImageNet train images",
        "recipe": "minmax_per_channel",
    }


def test_an_int8_file_that_is_not_the_measured_one_is_refused(artifacts: Path) -> None:
    folder = artifacts / lite0.EXPORT_DIR
    int8 = folder / lite0.INT8_FILE
    int8.write_bytes(b"measured")
    (folder / lite0.QUANTIZATION_REPORT).write_text(json.dumps({"chosen": _chosen(int8)}))
    int8.write_bytes(b"replaced afterwards")
    with pytest.raises(ValueError, match="expected"):
        _spec(artifacts)


def test_the_committed_int8_file_matches_its_report() -> None:
    if not (EXPORT / lite0.INT8_FILE).is_file():
        pytest.skip("no committed INT8 file yet")
    found = lite0.lite0_int8(REPO / "artifacts")
    assert found is not None
    path, chosen = found
    assert path.stat().st_size < 8_000_000 and chosen["delta_precision_at_10"] > -0.05


@pytest.mark.parametrize("task", ["embedding", "classification"])
def test_the_task_chooses_the_output_labels_and_stage(artifacts: Path, task: str) -> None:
    spec, _ = lite0.lite0_spec(artifacts, name="m", task=task, version="v7", stage=Stage.ARCHIVED)  # type: ignore[arg-type]
    assert spec.output_name == lite0.OUTPUTS[task] and (spec.version, spec.stage) == ("v7", Stage.ARCHIVED)
    assert (len(spec.labels) == 1000) == (task == "classification")
    assert spec.extra.get("dim") == (1280 if task == "embedding" else None)


@pytest.mark.parametrize("version", sorted(lite0.FINETUNED_DIRS))
def test_each_committed_fine_tune_is_checked_against_its_release(version: str) -> None:
    spec, files = lite0.finetuned_spec(REPO / "artifacts", version=version)
    assert spec.name == "classifier" and spec.version == version and len(spec.labels) == 200
    assert spec.stage == Stage.PRODUCTION
    assert set(files) == set(spec.files) and all(path.is_file() for path in files.values())
