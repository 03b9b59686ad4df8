"""Reference profiles: built from rows, saved and loaded back."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.drift.features import IMAGE_FEATURES
from services.drift.reference import ReferenceProfile, build_reference, reference_path
from tests.unit.services.drift.synthetic import rows


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    profile = build_reference("classifier", "v2", rows(50, 0), source="synthetic", extra={"split": "even"})
    path = reference_path(tmp_path / "drift", "classifier", "v2")
    profile.save(path)
    assert path == tmp_path / "drift" / "classifier-v2.json"
    assert ReferenceProfile.load(path) == profile


def test_build_reference_keeps_every_feature() -> None:
    source = rows(30, 1)
    profile = build_reference("m", "v1", source, source="synthetic")
    assert profile.n == 30
    assert set(profile.image) == set(IMAGE_FEATURES)
    assert profile.image["brightness"] == [r["image"]["brightness"] for r in source]
    assert sum(profile.labels.values()) == 30
    assert profile.sketch is not None and len(profile.sketch) == 30
    assert list(profile.labels) == sorted(profile.labels)


def test_build_reference_samples_down_to_max_samples_reproducibly() -> None:
    source = rows(100, 2)
    first = build_reference("m", "v1", source, source="s", max_samples=40, seed=5)
    second = build_reference("m", "v1", source, source="s", max_samples=40, seed=5)
    assert first.n == 40 and first.image == second.image and first.confidence == second.confidence


def test_build_reference_without_sketches_or_labels() -> None:
    source = [{**r, "sketch": None, "label": None, "confidence": None} for r in rows(10, 3)]
    profile = build_reference("embedder", "v1", source, source="s")
    assert profile.sketch is None and profile.labels == {} and profile.confidence == []


def test_build_reference_refuses_no_rows() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        build_reference("m", "v1", [], source="s")
