"""The quantization study: variants measured against FP32 on a tiny graph (the real files: tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.unit.training.tiny_onnx import noise_images, tiny_model
from training import quantization_study as study
from training.quantize import QuantizeConfig
from training.yolox_build import int8_config


def test_detector_variants_are_unique_and_include_the_import_recipe() -> None:
    variants = study.detector_variants()
    names = [name for name, _, _ in variants]
    assert len(names) == len(set(names))
    assert int8_config() in [config for _, _, config in variants]
    assert {config.method for _, _, config in variants} == {"minmax", "percentile", "entropy"}
    assert {config.per_channel for _, _, config in variants} == {True, False}


def test_embedder_variants_calibrate_on_the_given_count() -> None:
    variants = study.embedder_variants(64)
    assert {config.count for _, _, config in variants} == {64}
    assert {config.method for _, _, config in variants} == {"minmax", "percentile", "entropy"}


def test_run_study_reports_each_variant_against_fp32(tmp_path: Path) -> None:
    src = tiny_model(tmp_path / "tiny.onnx")
    report = {"preprocessing": {"input_size": 16, "color_order": "RGB", "mean": [0, 0, 0], "std": [255, 255, 255]}}
    (tmp_path / "export.json").write_text(json.dumps(report))
    pool = noise_images(tmp_path, 4)
    batch = np.random.default_rng(0).uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)

    def metric(path: Path, precision: str) -> dict[str, object]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return {"score": float(np.abs(session.run(None, {"images": batch})[0]).mean()), "precision": precision}

    variants = [
        ("per_tensor", "all quantized", QuantizeConfig(count=2)),
        ("float_head", "head in float", QuantizeConfig(count=3, per_channel=True, exclude_after=("head.",))),
    ]
    result = study.run_study("embedder", src, variants, metric, pool, tmp_path)
    assert result["fp32"]["precision"] == "fp32" and result["fp32"]["bytes"] == src.stat().st_size
    assert result["fp32"]["latency_ms"] > 0
    first, second = result["variants"]
    assert [first["name"], second["name"]] == ["per_tensor", "float_head"]
    for row in (first, second):
        assert row["delta_score"] == round(row["score"] - result["fp32"]["score"], 4)
        assert row["bytes"] == (tmp_path / f"{row['name']}.onnx").stat().st_size
        assert row["size_vs_fp32"] == round(row["bytes"] / src.stat().st_size, 3)
    assert (first["calibration_images"], second["calibration_images"]) == (2, 3)
    assert second["excluded_nodes"] == ["conv2", "flat", "gap"] and first["excluded_nodes"] == []
    assert second["settings"]["per_channel"] is True


def test_the_best_row_wins_and_the_smaller_file_breaks_ties() -> None:
    rows = [
        {"name": "a", "m": 0.3, "bytes": 5},
        {"name": "b", "m": 0.4, "bytes": 9},
        {"name": "c", "m": 0.4, "bytes": 7},
    ]
    assert study.best(rows, "m")["name"] == "c"
    report = study.finish_detector({"variants": [{"map50_95": 0.31, "delta_map50_95": -0.02, "bytes": 1}]})
    assert report["goal"] == {"max_map50_95_loss": 0.015, "met": False} and report["chosen"]["map50_95"] == 0.31


@pytest.mark.parametrize(
    ("folder", "models"), [("yolox_nano", {"detector"}), ("efficientnet_lite0_imagenet1k", {"classifier", "embedder"})]
)
def test_committed_reports_feed_the_model_cards(folder: str, models: set[str]) -> None:
    from training import model_report

    metrics = Path(__file__).resolve().parents[3] / "artifacts" / folder / "metrics.json"
    if not metrics.with_name("quantization.json").is_file():
        pytest.skip("no quantization report")
    reports = {r.model: r for r in model_report.load_reports(metrics, None)}
    assert set(reports) == models
    for name in models:
        assert (
            reports[name].files["int8"].sha256
            == json.loads(metrics.with_name("quantization.json").read_text())["chosen"]["sha256"]
        )
        assert reports[name].quantization is not None and "variants" not in reports[name].quantization
    if "detector" in models:
        assert reports["detector"].metrics.int8["map50_95"] >= reports["detector"].metrics.fp32["map50_95"] - 0.015
    else:
        assert reports["embedder"].metrics.int8["precision_at_10"] > 0.3
        assert not reports["classifier"].metrics.int8  # the classifier's INT8 accuracy is not measured
