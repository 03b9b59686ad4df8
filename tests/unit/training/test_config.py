from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from training.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_file_validates(path: Path) -> None:
    config = TrainConfig.from_yaml(path)
    assert config.name
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config


def test_overrides_set_nested_fields_parsed_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim:\n  lr: 0.1\n")
    config = TrainConfig.from_yaml(
        path, ["optim.lr=0.002", "trainer.epochs=7", "data.root=/data/t", "model.feature_cache=false"]
    )
    assert config.optim.lr == 0.002
    assert config.trainer.epochs == 7
    assert config.data.root == Path("/data/t")
    assert config.model.feature_cache is False
    assert config.run_dir == Path("runs") / "x"


def test_a_malformed_override_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.from_yaml(path, ["optim.lr"])


@pytest.mark.parametrize(
    "text", ["name: x\noptim:\n  lrr: 1\n", "name: x\nmodel:\n  freeze_through: 9\n", "optim: {}\n"]
)
def test_unknown_or_invalid_fields_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError):
        TrainConfig.from_yaml(path)


def test_to_yaml_round_trips(tmp_path: Path) -> None:
    config = TrainConfig(name="r")
    path = tmp_path / "r.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(path) == config
