"""A run folder becomes an artifact folder: ONNX FP32 + INT8, parity, metrics through the serving pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.unit.training.tree import WNIDS, make_tiny_imagenet
from training.config import TrainConfig
from training.data.tiny_imagenet import TinyImageNet
from training.modules.lite0_net import build_classifier
from training.provenance import run_origin
from training.release import eval_batch, load_run, main
from training.settings import get_training_settings

pytestmark = pytest.mark.slow

SIZE = 96


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder as ``training.train`` writes it, over a three-class tree found through CV_DATA_DIR."""
    make_tiny_imagenet(tmp_path / "data" / "datasets", per_class=4, val_per_class=3)
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    get_training_settings.cache_clear()
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    torch.save(build_classifier(len(WNIDS), WNIDS).state_dict(), run / "model.pt")
    labels = [{"id": i, "wnid": w, "name": w, "words": w} for i, w in enumerate(WNIDS)]
    (run / "labels.json").write_text(json.dumps(labels))
    # Not the ImageNet export's 224: the release serves at the size the run trained at, in every file it writes.
    (run / "config.yaml").write_text(TrainConfig(name="t", data={"image_size": SIZE}).to_yaml())
    (run / "summary.json").write_text(json.dumps({"name": "t", "train_images_per_s": [1.0], "config": {}}))
    yield run
    get_training_settings.cache_clear()


def test_release_writes_checked_fp32_and_int8_files_and_their_metrics(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    assert main(["--run", str(run_dir), "--out", str(out), "--threads", "1"]) == 0

    export = json.loads((out / "export.json").read_text())
    assert export["onnx"]["io"]["logits"] == ["batch", 3]
    assert export["onnx"]["io"]["images"] == ["batch", 3, SIZE, SIZE]
    assert export["preprocessing"]["input_size"] == SIZE and f"to {SIZE}," in export["preprocessing"]["resize"]
    assert all(case["logits"] < 1e-3 for name, case in export["parity"].items() if name != "tolerance")
    assert [e["wnid"] for e in json.loads((out / "labels.json").read_text())] == list(WNIDS)
    assert yaml.safe_load((out / "train_config.yaml").read_text())["name"] == "t"

    metrics = json.loads((out / "metrics.json").read_text())
    fp32, int8 = metrics["metrics"]["fp32"], metrics["metrics"]["int8"]
    assert "9 images" in metrics["data"]["evaluation"]
    assert 0.0 <= int8["top1"] <= int8["top5"] <= 1.0
    assert len(metrics["failure_cases"]) == 2 and "->" in metrics["failure_cases"][1]
    assert metrics["files"]["int8"]["bytes"] < metrics["files"]["fp32"]["bytes"] / 2
    assert metrics["quantization"]["qdq_nodes"] > 0
    assert f"{SIZE}x{SIZE} input" in metrics["arch"] and f"upscaled to {SIZE})" in metrics["summary"]

    # The served FP32 top-1 equals PyTorch's on the same images (same preprocessing, same weights).
    model = build_classifier(len(WNIDS))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    val = TinyImageNet(tmp_path / "data" / "datasets" / "tiny-imagenet-200").val()
    with torch.no_grad():
        predicted = model.eval()(torch.from_numpy(eval_batch([s.path for s in val], SIZE))).argmax(1)
    expected = sum(int(p) == s.label for p, s in zip(predicted, val, strict=True)) / len(val)
    assert fp32["top1"] == pytest.approx(expected, abs=1e-4)


def test_the_report_says_how_a_run_trained(tmp_path: Path) -> None:
    default = TrainConfig(name="lite0_tiny_imagenet").model_dump(mode="json")
    origin = run_origin(default, {"name": "lite0_tiny_imagenet"}, tmp_path)
    assert origin["command"] == "make train && make release"
    assert "2 stored views" in origin["data"]
    assert origin["training"]["recipe"].startswith("stem and blocks[0..4] frozen (feature cache), blocks[5..6]")
    assert "ImageNet rows" in origin["training"]["recipe"]

    v9 = TrainConfig.from_yaml(Path("training/configs/lite0_tiny_imagenet_v9.yaml")).model_dump(mode="json")
    origin = run_origin(v9, {"name": "lite0_tiny_imagenet_v9"}, tmp_path)
    assert origin["data"].endswith("augmented afresh every epoch") and "stored" not in origin["note"]
    assert origin["training"]["recipe"] == (
        "stem and blocks[0..1] frozen, blocks[2..6], head conv and the 200-class head trained, starting from the "
        "weights of runs/lite0_soup_v8/model.pt; BatchNorm statistics frozen"
    )
    assert origin["command"].startswith("python -m training.train --config training/configs/lite0_tiny_imagenet_v9")

    whole = TrainConfig(name="gpu", model={"freeze_through": -1, "feature_cache": False}).model_dump(mode="json")
    assert run_origin(whole, {"name": "gpu"}, tmp_path)["training"]["recipe"].startswith("stem, blocks[0..6], head")


def test_a_run_started_from_an_earlier_run_records_both_stages(tmp_path: Path) -> None:
    first = tmp_path / "runs" / "stage1"
    first.mkdir(parents=True)
    stage1 = TrainConfig(
        name="lite0_stage1", data={"image_size": 128}, model={"freeze_through": -1, "feature_cache": False}
    )
    (first / "config.yaml").write_text(stage1.to_yaml())
    (first / "summary.json").write_text(
        json.dumps(
            {"train_images_per_s": [52.0], "wall_clock_s": 3000.0, "val_metrics_cached_features": {"val/acc": 0.7}}
        )
    )
    second = TrainConfig(
        name="lite0_stage2",
        data={"image_size": 160},
        model={"freeze_through": -1, "feature_cache": False, "init_from": str(first / "model.pt")},
    ).model_dump(mode="json")

    origin = run_origin(second, {"name": "lite0_stage2"}, tmp_path)
    stage = origin["training"]["earlier_stage"]
    assert stage["name"] == "lite0_stage1" and stage["image_size"] == 128 and stage["val_top1_after"] == 0.7
    assert stage["recipe"].startswith("stem, blocks[0..6], head conv")
    assert origin["training"]["image_size"] == 160
    assert origin["command"] == (
        "python -m training.train --config training/configs/lite0_stage1.yaml && "
        "python -m training.train --config training/configs/lite0_stage2.yaml && "
        "python -m training.release --run runs/lite0_stage2"
    )
    assert origin["early_layers_kept"] is False

    # A start that is not a training run (ImageNet, or weights without a run's config) records no earlier stage.
    v9 = TrainConfig.from_yaml(Path("training/configs/lite0_tiny_imagenet_v9.yaml")).model_dump(mode="json")
    origin = run_origin(v9, {"name": "lite0_tiny_imagenet_v9"}, tmp_path)
    assert "earlier_stage" not in origin["training"] and origin["early_layers_kept"] is True


def test_a_run_whose_weights_are_of_other_classes_is_refused(run_dir: Path, tmp_path: Path) -> None:
    torch.save(build_classifier(len(WNIDS) + 1).state_dict(), run_dir / "model.pt")  # a head of one class more
    with pytest.raises(ValueError, match="does not hold this network's weights"):
        load_run(run_dir)
