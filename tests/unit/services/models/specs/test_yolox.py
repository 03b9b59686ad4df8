"""The detector's spec, and its INT8 metrics: taken from the report only for the recipe that was built."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from services.config import Stage
from services.models.specs import yolox

REPO = Path(__file__).resolve().parents[5]
SETTINGS = {"method": "percentile", "per_channel": True, "count": 2, "seed": 0, "exclude_upto": "Mul_69"}
IMAGES = ["000000000009.jpg", "000000000025.jpg"]


def test_the_spec_is_yolox_with_the_80_coco_labels() -> None:
    spec = yolox.detector_spec(version="v3", files={"fp32": yolox.DYNAMIC_FILE}, metrics={"m": 1})
    assert (spec.name, spec.task, spec.arch, spec.stage) == ("detector", "detection", "yolox", Stage.PRODUCTION)
    assert spec.labels[0] == "person" and len(spec.labels) == 80 and spec.labels == yolox.detector_labels()
    assert spec.input == yolox.detector_input() and spec.input.color_order == "BGR" and spec.input.height == 416
    assert yolox.detector_spec(version="v3", files={}, metrics={}, stage=Stage.CANARY).stage == Stage.CANARY


def _built(settings: dict[str, Any] = SETTINGS, images: list[str] = IMAGES, sha256: str = "a" * 64) -> dict[str, Any]:
    """The ``int8`` part of a build record (training.quantize.quantize_model's report)."""
    return {
        "settings": {**settings, "onnxruntime": "9.9"},  # this machine's library; not part of the recipe
        "calibration": {"count": len(images), "images": images},
        "output": {"file": yolox.INT8_FILE, "sha256": sha256},
    }


def _report(artifacts: Path, **extra: object) -> None:
    chosen = {"name": "r", "settings": {**SETTINGS, "onnxruntime": "1.0"}, "map50_95": 0.33, "map50": 0.49,
              "delta_map50_95": -0.009, "calibration_images": 2, "calibration": {"count": 2, "images": IMAGES},
              "sha256": "a" * 64, **extra}  # fmt: skip
    path = artifacts / yolox.QUANTIZATION_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"chosen": chosen}))


def test_without_a_report_the_int8_metrics_are_left_out(tmp_path: Path) -> None:
    assert yolox.int8_metrics(tmp_path, _built()) == {}


def test_int8_metrics_come_from_the_report_of_the_same_recipe(tmp_path: Path) -> None:
    _report(tmp_path)
    assert yolox.int8_metrics(tmp_path, _built()) == {
        "coco_val2017_first128_map50_95": 0.33,
        "coco_val2017_first128_map50": 0.49,
        "delta_map50_95_vs_fp32": -0.009,
        "calibration": "2 COCO128 train2017 images",
        "recipe": "r",
    }


@pytest.mark.parametrize(
    ("built", "what"),
    [
        (_built({**SETTINGS, "method": "minmax"}), r"settings \['method'\]"),
        (_built({**SETTINGS, "exclude_after": ["head."]}), r"settings \['exclude_after'\]"),
        (_built(images=IMAGES[::-1]), "calibration images"),
    ],
)
def test_a_build_of_another_recipe_is_refused(tmp_path: Path, built: dict[str, Any], what: str) -> None:
    _report(tmp_path)
    with pytest.raises(ValueError, match=f"another INT8 recipe.*{what}"):
        yolox.int8_metrics(tmp_path, built)


def test_other_bytes_of_the_same_recipe_are_accepted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another CPU calibrates to other last bits: the recipe decides, the difference is logged."""
    _report(tmp_path)
    with caplog.at_level(logging.WARNING, logger=yolox.__name__):
        assert yolox.int8_metrics(tmp_path, _built())["recipe"] == "r"
        assert not caplog.records
        assert yolox.int8_metrics(tmp_path, _built(sha256="b" * 64))["recipe"] == "r"
    (record,) = caplog.records
    assert "last bits" in record.getMessage()


def test_the_committed_report_vouches_for_its_own_file_within_the_goal() -> None:
    path = REPO / "artifacts" / yolox.QUANTIZATION_REPORT
    if not path.is_file():
        pytest.skip("no quantization report yet")
    report = json.loads(path.read_text())
    chosen = report["chosen"]
    metrics = yolox.int8_metrics(REPO / "artifacts", chosen | {"output": {"sha256": chosen["sha256"]}})
    assert metrics["delta_map50_95_vs_fp32"] >= -report["goal"]["max_map50_95_loss"] == -0.015
    assert abs(report["fp32"]["map50_95"] - yolox.FP32_METRICS["coco_val2017_first128_map50_95"]) <= 0.005
    assert report["goal"]["met"]
