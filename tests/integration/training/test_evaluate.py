"""Evaluation of the real files: the detector on COCO val2017, the Lite0 file on Tiny-ImageNet val (mirror data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import evaluate
from training.settings import TrainingSettings, get_training_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def test_the_fp32_mirror_file_reproduces_the_reference_map(tmp_path: Path) -> None:
    settings = get_training_settings()
    _need(settings.datasets_mirror_dir / "coco128" / "coco-val2017-first128.tar.gz")
    onnx_path = _need(settings.model_mirror_dir / "yolox_nano.onnx")
    out = tmp_path / "detector.json"
    assert evaluate.main(["detector", "--onnx", str(onnx_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert abs(report["map50_95"] - 0.339) <= 0.005, report
    assert report["images"] == 128 and report["boxes"] == 898 and report["precision"] == "fp32"


def _lite0(settings: TrainingSettings) -> Path:
    return _need(settings.artifacts_dir / "efficientnet_lite0_imagenet1k" / "model.onnx")


def test_the_lite0_file_embeds_and_classifies_tiny_imagenet_val(capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_training_settings()
    onnx_path = _lite0(settings)
    try:
        evaluate.tiny_imagenet_samples(1)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert evaluate.main(["embedder", "--onnx", str(onnx_path), "--limit", "40"]) == 0
    embedded = json.loads(capsys.readouterr().out)
    assert embedded["images"] == 40 and 0.0 <= embedded["precision_at_10"] <= 1.0
    assert (embedded["split"], embedded["expand"]) == ("val", 0)
    expanded = evaluate.evaluate("embedder", onnx_path, limit=60, split="train", expand=3)
    assert (expanded["split"], expanded["expand"], expanded["images"]) == ("train", 3, 60)
    # train is listed class by class: the first 60 are 50 of one class and 10 of the next, never val's order
    assert 0.5 <= expanded["precision_at_10"] <= 1.0
    # The ImageNet-1k head does not use Tiny-ImageNet indices: top-k here only checks the plumbing.
    report = evaluate.evaluate("classifier", onnx_path, limit=8)
    assert report["images"] == 8 and 0.0 <= report["top1"] <= report["top5"] <= 1.0
