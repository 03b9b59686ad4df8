"""The training command end to end on a three-class tree: real Lite0, real Lightning, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.unit.training.tree import WNIDS, make_tiny_imagenet
from training.config import TrainConfig
from training.settings import TrainingSettings
from training.train import main, resolve_resume, run

pytestmark = pytest.mark.slow


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tiny_imagenet(tmp_path / "data", per_class=4, val_per_class=2)


def _config(tree: Path, tmp_path: Path, **trainer: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "name": "t",
            "out_dir": str(tmp_path / "runs"),
            "data": {"root": str(tree), "batch_size": 4, "num_workers": 0, "views": 2, "image_size": 96},
            "trainer": {"epochs": 1, "log_every_n_steps": 1, "threads": 2, **trainer},
        }
    )


def _settings(tmp_path: Path) -> TrainingSettings:
    return TrainingSettings(data_dir=tmp_path / "d")


def test_fast_dev_run_on_stored_features_writes_the_model_and_labels(tree: Path, tmp_path: Path) -> None:
    config = _config(tree, tmp_path, fast_dev_run=1)
    summary = run(config, settings=_settings(tmp_path))
    run_dir = config.run_dir
    labels = json.loads((run_dir / "labels.json").read_text())
    assert [entry["wnid"] for entry in labels] == list(WNIDS)
    assert labels[0]["name"] == "goldfish" and labels[0]["words"] == "goldfish, Carassius auratus"
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["classifier.weight"].shape == (3, 1280)
    assert TrainConfig.from_yaml(run_dir / "config.yaml") == config
    assert summary["name"] == "t"
    assert list((tmp_path / "d" / "cache" / "features").iterdir())  # train and val caches


def test_training_on_images_end_to_end(tree: Path, tmp_path: Path) -> None:
    config = _config(tree, tmp_path, fast_dev_run=1)
    config.model.feature_cache = False
    run(config, settings=_settings(tmp_path))
    assert (config.run_dir / "model.pt").is_file()
    assert not (tmp_path / "d" / "cache").exists()


def test_checkpoints_are_written_and_a_run_resumes_from_last(tree: Path, tmp_path: Path) -> None:
    config = _config(tree, tmp_path)
    first = run(config, settings=_settings(tmp_path))
    checkpoints = config.run_dir / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and (checkpoints / "best.ckpt").is_file()
    assert first["best_checkpoint"] == "best.ckpt"
    assert 0.0 <= first["val_metrics_cached_features"]["val/acc"] <= 1.0
    assert len(first["train_images_per_s"]) == 1
    config.trainer.epochs = 2
    second = run(config, resume="last", settings=_settings(tmp_path))
    assert len(second["train_images_per_s"]) == 1  # only the second epoch ran
    logs = sorted((config.run_dir / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2  # the resumed run kept the first run's log
    assert all("train/loss" in log.read_text() and "val/acc" in log.read_text() for log in logs)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_resume("last", tmp_path)


def test_the_command_line_takes_a_config_and_overrides(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "d"))
    path = tmp_path / "c.yaml"
    path.write_text(_config(tree, tmp_path).to_yaml())
    assert main(["--config", str(path), "--set", "trainer.fast_dev_run=1", "--set", "name=cli"]) == 0
    assert (tmp_path / "runs" / "cli" / "model.pt").is_file()


def test_a_run_starts_from_given_weights_with_frozen_norms_and_keys_its_feature_cache_by_them(
    tree: Path, tmp_path: Path
) -> None:
    first = _config(tree, tmp_path, fast_dev_run=1)
    run(first, settings=_settings(tmp_path))
    start = torch.load(first.run_dir / "model.pt", weights_only=True)
    caches = set((tmp_path / "d" / "cache" / "features").iterdir())

    second = _config(tree, tmp_path, fast_dev_run=1, channels_last=True)
    second.name = "from_first"
    second.model.init_from = first.run_dir
    second.model.freeze_norms = True
    second.model.freeze_through = 3  # the trunk (stem..blocks[3]) is the first run's, which trained nothing there
    run(second, settings=_settings(tmp_path))
    after = torch.load(second.run_dir / "model.pt", weights_only=True)
    norms = [k for k in start if k.endswith("running_var")]
    assert norms and all(torch.equal(after[k], start[k]) for k in norms)  # the statistics did not move
    assert not torch.equal(after["classifier.weight"], start["classifier.weight"])  # but it trained from there
    assert after["conv_stem.weight"].is_contiguous()  # written NCHW
    new = set((tmp_path / "d" / "cache" / "features").iterdir()) - caches
    assert len(new) == 2  # other starting weights: other stored maps (train and val)
