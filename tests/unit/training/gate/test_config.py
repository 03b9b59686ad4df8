"""The gate's one thresholds file: defaults overlaid per model, refusals of unknown models and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.models.catalogue import MODEL_NAMES
from training.gate.config import DEFAULT_CONFIG, GateConfigError, load_gate_config


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_catalogued_model_has_a_gate_in_the_committed_file(name: str) -> None:
    gate = load_gate_config(name)
    assert gate.name == name and gate.metric
    assert gate.report_dir(Path("/a")) == Path("/a") / gate.artifacts / "release"


def test_model_sections_override_the_defaults() -> None:
    assert load_gate_config("detector").int8_loss_points == 1.5
    classifier = load_gate_config("classifier")
    assert classifier.int8_loss_points == 1.0 and classifier.metric_drop_points == 0.5
    assert classifier.p95_slowdown_percent == 10.0 and classifier.metric == "top1"
    assert DEFAULT_CONFIG.name == "release_gate.yaml"


def test_unknown_models_and_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GateConfigError, match="no gate for model 'nope'"):
        load_gate_config("nope")
    bad = tmp_path / "gate.yaml"
    bad.write_text("defaults:\n  metric_drop_pionts: 1\nmodels:\n  classifier: {metric: top1, artifacts: x}\n")
    with pytest.raises(GateConfigError, match="metric_drop_pionts"):
        load_gate_config("classifier", bad)
    bad.write_text("models:\n  classifier: {metric: top1, artifacts: x, p95_slowdown_percent: -1}\n")
    with pytest.raises(GateConfigError):
        load_gate_config("classifier", bad)
