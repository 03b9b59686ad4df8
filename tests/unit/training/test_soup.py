"""A soup of released fine-tunes: each release's ONNX file loads back into timm exactly, the soup is the weighted
average of the folded networks, and ``training.release`` takes the run folder it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from services.models.specs.lite0 import finetuned_dir
from services.models.store import sha256_file
from tests.unit.training.tree import WNIDS, make_tiny_imagenet
from training.export import Lite0WithEmbeddings, export_onnx, preprocessing_info
from training.modules.lite0_net import build_classifier
from training.release import main as release_main
from training.settings import get_training_settings
from training.soup import average, main, make_soup, onnx_weights, state_dict_from_onnx

pytestmark = pytest.mark.slow

LABELS = [{"id": i, "wnid": w, "name": w, "words": w} for i, w in enumerate(WNIDS)]
INPUT = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)


def _trained(seed: int) -> torch.nn.Module:
    """A 3-class Lite0 moved away from its initialisation, BatchNorm statistics included (so folding matters)."""
    torch.manual_seed(seed)
    model = build_classifier(len(WNIDS), WNIDS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _release(artifacts: Path, version: str, seed: int) -> Path:
    """A release folder as ``training.release`` leaves it, as far as a soup reads it."""
    folder = artifacts / finetuned_dir(version)
    folder.mkdir(parents=True)
    export_onnx(Lite0WithEmbeddings(_trained(seed)).eval(), folder / "model.onnx")
    metrics = {
        "files": {"fp32": {"name": "model.onnx", "sha256": sha256_file(folder / "model.onnx")}},
        "metrics": {"fp32": {"top1": 0.5 + seed / 100}, "int8": {"top1": 0.49 + seed / 100}},
        "training": {"recipe": f"seed {seed}"},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "labels.json").write_text(json.dumps(LABELS))
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    _release(root, "v2", seed=1)
    _release(root, "v3", seed=2)
    return root


def _ort_logits(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {session.get_inputs()[0].name: INPUT})[0]


def _torch_logits(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(INPUT)).numpy()


def _load(run: Path) -> torch.nn.Module:
    model = build_classifier(len(WNIDS))
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    return model


def test_an_export_loads_back_into_timm_exactly(artifacts: Path) -> None:
    path = artifacts / finetuned_dir("v2") / "model.onnx"
    model = build_classifier(len(WNIDS))
    model.load_state_dict(state_dict_from_onnx(model, onnx_weights(path)))
    np.testing.assert_allclose(_torch_logits(model), _ort_logits(path), atol=1e-3)


def test_the_soup_averages_the_folded_networks(artifacts: Path, tmp_path: Path) -> None:
    a, b = (onnx_weights(artifacts / finetuned_dir(v) / "model.onnx") for v in ("v2", "v3"))
    make_soup(["v2", "v3"], [3.0, 1.0], tmp_path / "soup", artifacts)
    state = _load(tmp_path / "soup").state_dict()
    expected = 0.75 * a["model.conv_stem.weight"] + 0.25 * b["model.conv_stem.weight"]
    np.testing.assert_allclose(state["conv_stem.weight"].numpy(), expected, atol=1e-6)
    folded_bias = 0.75 * a["model.conv_stem.weight_bias"] + 0.25 * b["model.conv_stem.weight_bias"]
    np.testing.assert_allclose(state["bn1.bias"].numpy(), folded_bias, atol=1e-6)
    np.testing.assert_allclose(
        state["classifier.bias"].numpy(),
        0.75 * a["model.classifier.bias"] + 0.25 * b["model.classifier.bias"],
        atol=1e-6,
    )

    config = yaml.safe_load((tmp_path / "soup" / "config.yaml").read_text())["soup"]
    assert config["releases"] == ["v2", "v3"] and config["weights"] == [0.75, 0.25]
    assert config["files"]["v3"]["path"] == f"{finetuned_dir('v3')}/model.onnx"  # relative: committed with releases
    # Releases without an export.json's input_size were all exported at 224; training.release exports the soup so.
    assert yaml.safe_load((tmp_path / "soup" / "config.yaml").read_text())["data"] == {"image_size": 224}
    assert [e["wnid"] for e in json.loads((tmp_path / "soup" / "labels.json").read_text())] == list(WNIDS)


def test_a_soup_weighted_wholly_to_one_release_is_that_release(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_ARTIFACTS_DIR", str(artifacts))
    get_training_settings.cache_clear()
    try:
        args = ["--release", "v2", "--release", "v3", "--weights", "0", "1", "--out", str(tmp_path / "soup")]
        assert main(args) == 0
    finally:
        get_training_settings.cache_clear()
    np.testing.assert_allclose(
        _torch_logits(_load(tmp_path / "soup")), _ort_logits(artifacts / finetuned_dir("v3") / "model.onnx"), atol=1e-3
    )


def test_what_a_soup_refuses(artifacts: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two or more different releases"):
        make_soup(["v2", "v2"], [1.0, 1.0], tmp_path / "s", artifacts)
    with pytest.raises(ValueError, match="no Tiny-ImageNet release is named 'v9'"):
        make_soup(["v2", "v9"], [1.0, 1.0], tmp_path / "s", artifacts)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        average([{"w": torch.ones(1)}, {"w": torch.ones(1)}], [1.0, -1.0])
    with pytest.raises(ValueError, match="2 state dicts for 1 weights"):
        average([{"w": torch.ones(1)}, {"w": torch.ones(1)}], [1.0])

    weights = onnx_weights(artifacts / finetuned_dir("v2") / "model.onnx")
    del weights["model.blocks.6.0.conv_dw.weight"]
    with pytest.raises(ValueError, match="lacks 1 parameters"):
        state_dict_from_onnx(build_classifier(len(WNIDS)), weights)
    weights = onnx_weights(artifacts / finetuned_dir("v2") / "model.onnx")
    weights["model.classifier.bias"] = np.zeros(7, np.float32)
    with pytest.raises(ValueError, match="the file's shape"):
        state_dict_from_onnx(build_classifier(len(WNIDS)), weights)

    # A release whose file is not the one its metrics.json released.
    tampered = tmp_path / "tampered"
    (tampered / "candidates").mkdir(parents=True)
    (tampered / finetuned_dir("v3")).symlink_to(artifacts / finetuned_dir("v3"), target_is_directory=True)
    copy = tampered / finetuned_dir("v2")
    copy.mkdir()
    for name in ("metrics.json", "labels.json"):
        (copy / name).write_text((artifacts / finetuned_dir("v2") / name).read_text())
    original = (artifacts / finetuned_dir("v2") / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ValueError, match="has sha256"):
        make_soup(["v2", "v3"], [1.0, 1.0], tmp_path / "s", tampered)


def test_release_takes_a_soup_run_and_says_what_it_averaged(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tiny_imagenet(tmp_path / "data" / "datasets", per_class=4, val_per_class=3)
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CV_ARTIFACTS_DIR", str(artifacts))
    get_training_settings.cache_clear()
    try:
        make_soup(["v2", "v3"], [1.0, 1.0], tmp_path / "soup", artifacts)
        out = tmp_path / "release"
        assert (
            release_main(["--run", str(tmp_path / "soup"), "--out", str(out), "--version", "v4", "--threads", "1"]) == 0
        )
    finally:
        get_training_settings.cache_clear()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["version"] == "v4"
    assert "weight average (a model soup) of releases v2 x 0.5, v3 x 0.5" in metrics["training"]["recipe"]
    assert metrics["training"]["ingredients"] == {"v2": {"recipe": "seed 1"}, "v3": {"recipe": "seed 2"}}
    assert "v2 0.5100 FP32, 0.5000 INT8; v3 0.5200 FP32, 0.5100 INT8" in metrics["metric_notes"][-1]
    assert metrics["data"]["training"].startswith("none of its own")
    assert metrics["provenance"]["command"] == (
        "python -m training.soup --release v2 --release v3 --out runs/soup"
        " && python -m training.release --run runs/soup"
    )
    export = json.loads((out / "export.json").read_text())
    assert all(case["logits"] < 1e-3 for name, case in export["parity"].items() if name != "tolerance")


def test_the_format_benchmark_times_a_fine_tune_without_its_run(artifacts: Path) -> None:
    """benchmarks/formats_eager.py rebuilds the eager network of a fine-tune from its file when no run is here."""
    from benchmarks.formats_eager import ModelPlan, eager_classifier

    path = artifacts / finetuned_dir("v3") / "model.onnx"
    plan = ModelPlan(name="classifier", fp32=path)
    eager = eager_classifier(plan)
    np.testing.assert_allclose(_torch_logits(eager.module), _ort_logits(path), atol=1e-3)
    assert plan.notes == ["PyTorch eager: the weights of `model.onnx` read back into timm (training/soup.py)."]


def test_releases_served_at_different_sizes_make_no_soup(tmp_path: Path) -> None:
    _release(tmp_path, "v2", seed=1)
    _release(tmp_path, "v3", seed=2)
    export = {"preprocessing": preprocessing_info("shorter side to 160", input_size=160)}
    (tmp_path / finetuned_dir("v3") / "export.json").write_text(json.dumps(export))
    with pytest.raises(ValueError, match=r"different input sizes.*'v2': 224, 'v3': 160"):
        make_soup(["v2", "v3"], [1.0, 1.0], tmp_path / "soup", tmp_path)
