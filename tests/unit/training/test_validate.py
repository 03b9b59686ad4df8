"""The gate's command: choosing the versions, promoting in the model store, exit statuses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from services.config import Stage
from services.models.spec import InputSpec, ModelSpec
from services.models.store import import_model, list_versions
from training import validate
from training.gate.checks import Check
from training.gate.config import GateConfigError, load_gate_config

NAME = "unit-gate-model"


def _store(tmp_path: Path, stages: dict[str, Stage]) -> None:
    for version, stage in stages.items():
        path = tmp_path / f"{version}.onnx"
        path.write_bytes(version.encode())
        spec = ModelSpec(
            name=NAME,
            version=version,
            task="classification",
            arch="efficientnet_lite0",
            stage=stage,
            input=InputSpec(height=8, width=8),
            output_name="logits",
            files={"fp32": path.name},
        )
        import_model(spec, {"fp32": path}, force=True)


def _stages() -> dict[str, str]:
    return {e.spec.version: e.spec.stage.value for e in list_versions(NAME)}


def test_versions_are_picked_by_stage_or_label_and_promotion_archives_production(tmp_path: Path) -> None:
    _store(tmp_path, {"v1": Stage.ARCHIVED, "v2": Stage.PRODUCTION, "v3": Stage.SHADOW})
    candidate, baseline = validate.pick_versions(NAME, "v3", "production")
    assert (candidate.spec.version, baseline.spec.version) == ("v3", "v2")
    assert validate.pick_versions(NAME, "v3", "v1")[1].spec.version == "v1"
    for version, against, message in [
        ("v9", "production", "not in the model store"),
        ("v3", "canary", "no other .* version is at stage 'canary'"),
        ("v3", "v7", "neither a stage nor a stored version"),
        ("v3", "v3", "cannot be compared with itself"),
    ]:
        with pytest.raises(validate.GateError, match=message):
            validate.pick_versions(NAME, version, against)
    assert validate.promote(NAME, "v3") == [f"{NAME}:v3: -> production", f"{NAME}:v2: production -> archived"]
    assert _stages() == {"v1": "archived", "v2": "archived", "v3": "production"}


def _fake_run(passed: bool) -> Any:
    check = Check("top1 drop (fp32)", 0.2 if passed else 2.0, 0.5, "points", passed, "candidate x, production y")
    return argparse.Namespace(
        checks=[check],
        passed=passed,
        decision="promoted" if passed else "refused",
        candidate=argparse.Namespace(tag="classifier:v3"),
        facts={"report": "artifacts/x/release/classifier-v3.md"},
    )


def test_main_exits_0_on_a_pass_1_on_a_refusal_and_2_when_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes: list[Any] = [_fake_run(True), _fake_run(False), validate.GateError("classifier:v9 is not in the store")]

    def fake(args: argparse.Namespace, argv: list[str]) -> Any:
        assert args.model == "classifier" and args.candidate == "v3" and argv[0] == "classifier"
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(validate, "run_gate", fake)
    assert validate.main(["classifier", "--candidate", "v3"]) == 0
    assert "classifier:v3: PROMOTED" in capsys.readouterr().out
    assert validate.main(["classifier", "--candidate", "v3", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "FAILED top1 drop (fp32): measured 2 points, allowed 0.5 points (over by 1.5 points)" in out
    assert "REFUSED" in out
    assert validate.main(["classifier", "--candidate", "v3"]) == 2
    assert "release gate: classifier:v9 is not in the store" in capsys.readouterr().err


def test_arguments_are_checked() -> None:
    with pytest.raises(SystemExit):
        validate.parse_args(["classifier", "--candidate", "v3", "--limit", "5"])
    with pytest.raises(SystemExit):
        validate.parse_args(["nope", "--candidate", "v3"])
    args = validate.parse_args(["embedder", "--candidate", "v3", "--limit", "50", "--report-dir", "/tmp/r"])
    assert args.against == "production" and args.limit == 50 and args.report_dir == Path("/tmp/r")


def test_a_threshold_is_replaced_for_one_release_only_with_a_reason() -> None:
    gate = load_gate_config("embedder")
    changed, notes = validate.override_thresholds(gate, ["p95_slowdown_percent=100", "int8_loss_points=0.5"])
    assert changed.p95_slowdown_percent == 100.0 and changed.int8_loss_points == 0.5
    assert changed.metric == gate.metric and changed.metric_drop_points == gate.metric_drop_points
    assert notes == ["p95_slowdown_percent 10.0 -> 100.0", "int8_loss_points 1.0 -> 0.5"]
    assert validate.override_thresholds(gate, []) == (gate, [])
    for bad in ("p95_slowdown_percent", "metric=top5", "nope=1", "p95_slowdown_percent=-5"):
        with pytest.raises(GateConfigError, match="--threshold"):
            validate.override_thresholds(gate, [bad])
    with pytest.raises(SystemExit):  # no reason given
        validate.parse_args(["embedder", "--candidate", "v3", "--threshold", "p95_slowdown_percent=100"])
    args = validate.parse_args(
        ["embedder", "--candidate", "v3", "--threshold", "p95_slowdown_percent=100", "--because", "ADR 0021"]
    )
    assert args.threshold == ["p95_slowdown_percent=100"] and args.because == "ADR 0021"
