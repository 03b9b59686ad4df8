"""The detector import: dynamic-batch FP32 and INT8 files built from the mirror, cached, measured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from bentos.detector import import_model as detector
from services.config import ServingSettings, get_settings
from services.models.store import sha256_file
from training.quantize import YOLOX_HEAD, QuantizeConfig, count_ops

SMALL = QuantizeConfig(count=2, per_channel=True, exclude_upto="Mul_69", exclude_after=YOLOX_HEAD)


def _mirror_settings(tmp_path: Path) -> ServingSettings:
    settings = get_settings()
    if not (settings.model_mirror_dir / detector.FILE_NAME).is_file():
        pytest.skip(f"model mirror not found at {settings.model_mirror_dir}")
    if not (settings.datasets_mirror_dir / "coco128" / "coco128.tar.gz").is_file():
        pytest.skip(f"COCO mirror not found at {settings.datasets_mirror_dir}")
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


def test_a_mirror_file_with_another_checksum_is_refused(tmp_path: Path) -> None:
    (tmp_path / detector.FILE_NAME).write_bytes(b"not the published export")
    settings = ServingSettings(model_mirror_dir=tmp_path, data_dir=tmp_path / "data")
    with pytest.raises(ValueError, match="expected"):
        detector.detector_files(settings, SMALL)
    assert not (tmp_path / "data").exists()


def test_the_cache_key_follows_the_recipe() -> None:
    assert detector.cache_key(SMALL) == detector.cache_key(QuantizeConfig(**vars(SMALL)))
    assert detector.cache_key(SMALL) != detector.cache_key(QuantizeConfig(count=3, per_channel=True))


def _report(path: Path, settings: dict, **extra: object) -> None:
    chosen = {"name": "r", "settings": settings, "map50_95": 0.33, "map50": 0.49, "delta_map50_95": -0.009,
              "calibration_images": 128, **extra}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"chosen": chosen}))


def test_int8_metrics_come_from_the_report_of_the_same_recipe(tmp_path: Path) -> None:
    settings = ServingSettings(artifacts_dir=tmp_path)
    assert detector.int8_metrics(settings, SMALL) == {}
    # The onnxruntime version may differ from the measuring one; the recipe may not.
    _report(tmp_path / detector.QUANTIZATION_REPORT, {**SMALL.settings(), "onnxruntime": "0.0"})
    assert detector.int8_metrics(settings, SMALL) == {
        "coco_val2017_first128_map50_95": 0.33,
        "coco_val2017_first128_map50": 0.49,
        "delta_map50_95_vs_fp32": -0.009,
        "calibration": "128 COCO128 train2017 images",
        "recipe": "r",
    }
    _report(tmp_path / detector.QUANTIZATION_REPORT, QuantizeConfig().settings())
    with pytest.raises(ValueError, match="another INT8 recipe"):
        detector.int8_metrics(settings, SMALL)


def test_the_committed_report_measured_the_import_recipe_within_the_goal() -> None:
    path = Path(detector.__file__).resolve().parents[2] / "artifacts" / detector.QUANTIZATION_REPORT
    if not path.is_file():
        pytest.skip("no quantization report yet")
    settings = ServingSettings(artifacts_dir=path.parent.parent)
    metrics = detector.int8_metrics(settings, detector.int8_config())
    assert metrics["delta_map50_95_vs_fp32"] >= -0.015
    report = json.loads(path.read_text())
    assert abs(report["fp32"]["map50_95"] - 0.339) <= 0.005 and report["goal"]["met"]


@pytest.mark.integration
@pytest.mark.slow
def test_files_are_built_once_then_reused_and_rebuilt_identically(tmp_path: Path) -> None:
    settings = _mirror_settings(tmp_path)
    files = detector.detector_files(settings, SMALL)
    assert set(files) == {"fp32", "int8"} and files["fp32"].parent == files["int8"].parent
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(files["fp32"])).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 416, 416]
    assert count_ops(files["int8"])["QuantizeLinear"] > 0
    build = json.loads((files["fp32"].parent / "build.json").read_text())
    assert build["batch_parity_max_abs"] <= detector.BATCH_PARITY_TOLERANCE
    assert build["int8"]["calibration"]["count"] == 2
    sums = {p: sha256_file(f) for p, f in files.items()}
    stamps = {p: f.stat().st_mtime_ns for p, f in files.items()}
    assert detector.detector_files(settings, SMALL) == files
    assert {p: f.stat().st_mtime_ns for p, f in files.items()} == stamps  # reused, not rebuilt
    files["int8"].unlink()  # an interrupted build: rebuilt, to the same bytes
    rebuilt = detector.detector_files(settings, SMALL)
    assert {p: sha256_file(f) for p, f in rebuilt.items()} == sums
    assert [p.name for p in files["fp32"].parent.parent.iterdir()] == [files["fp32"].parent.name]  # no leftovers


@pytest.mark.integration
@pytest.mark.slow
def test_build_gives_an_fp32_and_int8_spec_with_measured_metrics() -> None:
    settings = get_settings()
    if not (settings.model_mirror_dir / detector.FILE_NAME).is_file():
        pytest.skip("model mirror not available")
    spec, files = detector.build(argparse.Namespace(version="v9", stage="canary"), settings)
    assert spec.files == {"fp32": detector.DYNAMIC_NAME, "int8": detector.INT8_NAME}
    assert set(files) == {"fp32", "int8"} and all(f.is_file() for f in files.values())
    assert spec.version == "v9" and spec.stage.value == "canary" and len(spec.labels) == 80
    assert spec.metrics["coco_val2017_first128_map50_95"] == 0.339
    report = settings.artifacts_dir / detector.QUANTIZATION_REPORT
    if report.is_file():
        assert spec.metrics["int8"]["coco_val2017_first128_map50_95"] >= 0.339 - 0.015
        measured = json.loads(report.read_text())
        if measured["onnxruntime"] == ort.__version__:  # the import rebuilds the measured file, byte for byte
            assert sha256_file(files["int8"]) == measured["chosen"]["sha256"]
