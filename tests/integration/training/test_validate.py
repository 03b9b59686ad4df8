"""The release gate end to end on the real models in the test model store: a refusal and a promotion.

classifier:v1 (the ImageNet-1k export) against the production classifier must be refused on its top-1; a copy of
the production release's own files imported as a new version must pass every check and be promoted, the
production release archived. The detector runs
as a dry run (a copy of v1 against v1): it passes and nothing moves. A seeded subset keeps the runs short; the
test config allows any latency (no timed assertions) and a wider INT8 loss (one image of 60 is 1.7 points).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import bentoml
import pytest
import yaml

from kernel.db import migrate
from kernel.db.session import create_db_engine
from services.config import Stage
from services.drift.reference import ReferenceProfile
from services.models.specs.lite0 import PREVIOUS, SERVED
from services.models.store import import_model, list_versions, set_stage
from training import validate
from training.gate.config import DEFAULT_CONFIG
from training.settings import get_training_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LIMIT = "60"


def _stages(name: str) -> dict[str, str]:
    return {e.spec.version: e.spec.stage.value for e in list_versions(name)}


@pytest.fixture
def gate_config(tmp_path: Path) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["defaults"] |= {
        "p95_slowdown_percent": 1.0e6,
        "int8_loss_points": 5.0,
        "latency_iterations": 5,
        "latency_warmup": 1,
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def copy_of(model_store: list[str]) -> Iterator[object]:
    """Import a stored version's own files as a new shadow version; restore every stage and remove it after."""
    made: list[tuple[str, dict[str, str]]] = []

    def copy(name: str, source: str, version: str) -> None:
        (entry,) = [e for e in list_versions(name) if e.spec.version == source]
        made.append((name, _stages(name)))
        spec = entry.spec.model_copy(update={"version": version, "stage": Stage.SHADOW})
        import_model(spec, entry.paths)

    yield copy
    for name, stages in made:
        for version, stage in _stages(name).items():
            if version not in stages:
                bentoml.models.delete(f"{name}:{version}")
            elif stages[version] != stage:
                set_stage(name, version, Stage(stages[version]))


def _report(folder: Path, name: str) -> tuple[str, dict]:
    path = folder / f"{name}.md"
    return path.read_text(), json.loads(path.with_suffix(".json").read_text())


@pytest.fixture
def references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Drift references go to a folder of the test's, not artifacts/drift."""
    folder = tmp_path / "drift"
    monkeypatch.setenv("CV_DRIFT_REFERENCE_DIR", str(folder))
    get_training_settings.cache_clear()
    yield folder
    get_training_settings.cache_clear()


@pytest.fixture
def inference_log(tmp_path: Path) -> str:
    """An empty, migrated inference-log database: the candidate never ran in stage shadow."""
    url = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def test_the_imagenet_classifier_is_refused_and_a_copy_of_production_is_promoted(
    copy_of, gate_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], references: Path, inference_log: str
) -> None:
    before = _stages("classifier")
    assert before["v1"] == "archived" and before[PREVIOUS] == "archived" and before[SERVED] == "production"
    common = ["--limit", LIMIT, "--config", str(gate_config), "--report-dir", str(tmp_path)]

    assert validate.main(["classifier", "--candidate", "v1", *common]) == 1
    assert not references.exists()  # no reference for a refused candidate
    out = capsys.readouterr().out
    assert "FAILED top1 drop (fp32)" in out and "classifier:v1: REFUSED" in out
    assert _stages("classifier") == before
    markdown, report = _report(tmp_path, "classifier-v1")
    assert report["decision"] == "refused" and "Decision: **REFUSED**: FAILED top1 drop (fp32)" in markdown
    (drop,) = [c for c in report["checks"] if c["name"] == "top1 drop (fp32)"]
    assert drop["measured"] > 10 and drop["margin"] < 0  # the ImageNet head scores far lower on these classes
    parity = report["candidate"]["parity"]
    assert parity["max_abs_diff"] < 1e-3 and "ImageNet-1k weights" in parity["source"]
    assert len(report["candidate"]["precisions"]["fp32"]["worst_classes"]) == 10

    copy_of("classifier", SERVED, "gate-copy")
    assert validate.main(["classifier", "--candidate", "gate-copy", *common, "--inference-log", inference_log]) == 0
    assert "classifier:gate-copy: PROMOTED" in capsys.readouterr().out
    stages = _stages("classifier")
    assert stages["gate-copy"] == "production" and stages[SERVED] == "archived" and stages["v1"] == "archived"
    markdown, report = _report(tmp_path, "classifier-gate-copy")
    assert report["passed"] and report["decision"] == "promoted" and "Decision: **PROMOTED**" in markdown
    drops = [c["measured"] for c in report["checks"] if "drop" in c["name"]]
    assert drops == [0.0, 0.0]  # the same files on the same images
    assert "production -> archived" in report["facts"]["stage changes"]
    # The promoted version's drift reference, from the held-out images, where the api reads references.
    profile = ReferenceProfile.load(references / "classifier-gate-copy.json")
    assert (profile.model, profile.version, profile.n) == ("classifier", "gate-copy", int(LIMIT))
    assert report["drift_reference"]["n"] == int(LIMIT) and "## Drift reference" in markdown
    assert report["shadow"]["items"] == 0 and "never ran in stage `shadow`" in markdown


def test_a_detector_dry_run_passes_and_moves_nothing(copy_of, gate_config: Path, tmp_path: Path) -> None:
    copy_of("detector", "v2", "gate-v2")
    before = _stages("detector")
    argv = ["detector", "--candidate", "gate-v2", "--limit", "16", "--dry-run", "--config", str(gate_config)]
    assert validate.main([*argv, "--report-dir", str(tmp_path)]) == 0
    assert _stages("detector") == before
    _, report = _report(tmp_path, "detector-gate-v2")
    assert report["decision"] == "passed (dry run)" and report["images"] == 16
    fp32 = report["candidate"]["precisions"]["fp32"]
    assert 0.0 < fp32["metrics"]["map50_95"] < 1.0 and fp32["ece"] is not None and fp32["worst_classes"]
    assert report["candidate"]["parity"]["max_abs_diff"] is None
