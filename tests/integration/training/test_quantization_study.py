"""The quantization study on the real files: the detector (model mirror, COCO) and the embedder (Tiny-ImageNet)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import quantization_study as study
from training.quantize import YOLOX_HEAD, QuantizeConfig
from training.settings import get_training_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_detector_report_chooses_the_best_variant(tmp_path: Path) -> None:
    settings = get_training_settings()
    if not (settings.model_mirror_dir / "yolox_nano.onnx").is_file():
        pytest.skip("model mirror not available")
    recipe = QuantizeConfig(count=2, per_channel=True, exclude_upto="Mul_69", exclude_after=YOLOX_HEAD)
    variants = [("per_tensor", "", QuantizeConfig(count=2)), ("recipe", "", recipe)]
    report = study.detector_report(settings, tmp_path, variants)
    assert abs(report["fp32"]["map50_95"] - 0.339) <= 0.005
    assert report["chosen"]["name"] == "recipe"
    assert report["variants"][0]["map50_95"] < report["chosen"]["map50_95"]
    assert report["goal"]["met"] == (-report["chosen"]["delta_map50_95"] <= study.DETECTOR_GOAL)


def test_embedder_study_cli_writes_the_report_and_the_chosen_file(tmp_path: Path) -> None:
    settings = get_training_settings()
    try:
        from training.evaluate import tiny_imagenet_samples

        tiny_imagenet_samples(1)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "quantization.json"
    argv = ["embedder", "--out", str(out), "--work", str(tmp_path / "work"), "--count", "2", "--limit", "24"]
    assert study.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["fp32"]["images"] == 24
    assert [row["name"] for row in report["variants"]] == [n for n, _, _ in study.embedder_variants(2)]
    best = max(row["precision_at_10"] for row in report["variants"])
    assert report["chosen"]["precision_at_10"] == best
    chosen = tmp_path / "work" / f"{report['chosen']['name']}.onnx"
    assert (tmp_path / "model.int8.onnx").read_bytes() == chosen.read_bytes()
    assert report["source"]["file"] == "model.onnx" and settings.artifacts_dir.is_dir()
