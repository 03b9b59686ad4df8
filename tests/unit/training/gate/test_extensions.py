"""The gate's extensions: a promoted candidate's drift reference, and its shadow agreement from the inference log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kernel.db import migrate
from kernel.db.session import create_db_engine
from services.drift import build as drift_build
from services.drift.features import IMAGE_FEATURES
from services.drift.reference import ReferenceProfile, build_reference
from services.shadow import report as shadow_report
from tests.unit.training.gate.test_report import _run
from training.gate import extensions
from training.settings import get_training_settings


@pytest.fixture
def references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CV_DRIFT_REFERENCE_DIR", str(tmp_path / "drift"))
    get_training_settings.cache_clear()
    yield tmp_path / "drift"
    get_training_settings.cache_clear()


def _with_images(run: Any, tmp_path: Path, n: int = 3) -> Any:
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    run.data.paths = paths
    return run


def test_a_promoted_candidate_gets_its_reference_where_the_api_reads_them(
    references: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[np.ndarray] = []

    def fake_build(model: str, version: str, images: Iterator[np.ndarray], *, source: str) -> ReferenceProfile:
        seen.extend(images)
        rows = [
            {"image": dict.fromkeys(IMAGE_FEATURES, float(p.mean())), "label": "x", "confidence": 0.9, "sketch": None}
            for p in seen
        ]
        return build_reference(model, version, rows, source=source)

    monkeypatch.setattr(drift_build, "build_reference_for", fake_build)
    run = _with_images(_run(0.75), tmp_path)
    assert run.decision == "promoted"
    section = extensions.drift_reference(run)
    assert section is not None and section.key == "drift_reference" and section.data["n"] == 3
    profile = ReferenceProfile.load(references / "classifier-v3.json")
    assert (profile.version, profile.n, len(seen)) == ("v3", 3, 3)
    assert "held-out images (3 of 3)" in profile.source


def test_no_reference_for_a_refused_candidate_or_a_dry_run(references: Path) -> None:
    refused = _run(0.70)
    assert refused.decision == "refused" and extensions.drift_reference(refused) is None
    dry = _run(0.75)
    dry.decision = "passed (dry run)"
    assert extensions.drift_reference(dry) is None
    assert not references.exists()


def test_shadow_section_reads_the_inference_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    section = extensions.shadow_section(url)(_run(0.75))
    assert section is not None and section.data["items"] == 0 and "never ran in stage `shadow`" in section.markdown

    def agreement(engine: Any, *, model: str, version: str) -> dict[str, Any]:
        return {"model": model, "version": version, "items": 4, "compared": 4, "agreement": 0.75, "measure": "top1"}

    monkeypatch.setattr(shadow_report, "shadow_agreement", agreement)
    monkeypatch.setattr(shadow_report, "as_markdown", lambda report: f"agreement {report['agreement']}")
    section = extensions.shadow_section(url)(_run(0.75))
    assert section is not None and section.markdown == "agreement 0.75" and section.data["items"] == 4


def test_extensions_of_a_run() -> None:
    assert extensions.extensions_for(None) == (extensions.drift_reference,)
    assert len(extensions.extensions_for("sqlite://")) == 2
