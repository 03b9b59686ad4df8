"""Reference profiles from images through a model pool, the Tiny-ImageNet split and the command line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.config import ServingSettings
from services.drift import __main__ as cli
from services.drift import build
from services.drift.reference import ReferenceProfile
from services.models.registry import ModelPool
from tests.unit.fakes import FakeFactory, FakeRunner, make_entry

LABELS = ["cat", "dog", "fish"]


def pool() -> ModelPool:
    runner = FakeRunner(fn=lambda batch: np.stack([[float(b.mean()), 0.0, 1.0] for b in batch]))
    return ModelPool(
        "classifier",
        [make_entry(name="classifier", version="v2", labels=LABELS)],
        FakeFactory({("v2", "fp32"): runner}),
    )


def images(n: int) -> list[np.ndarray]:
    return [np.full((8, 10, 3), 10 * i, dtype=np.uint8) for i in range(n)]


def test_features_for_keeps_the_order_over_batches() -> None:
    rows = build.features_for(pool(), "v2", images(5), batch=2)
    assert len(rows) == 5
    assert [r["image"]["brightness"] for r in rows] == sorted(r["image"]["brightness"] for r in rows)
    assert all(r["label"] in LABELS and r["sketch"] is not None for r in rows)


def test_build_reference_for_runs_at_most_max_samples() -> None:
    profile = build.build_reference_for(
        "classifier", "v2", iter(images(7)), source="test", pool=pool(), max_samples=4, extra={"k": 1}
    )
    assert profile.n == 4 and profile.model == "classifier" and profile.version == "v2"
    assert profile.extra == {"k": 1} and profile.sketch is not None and len(profile.sketch) == 4


def test_val_number() -> None:
    assert build.val_number("val_1234.JPEG") == 1234


def test_decode_is_the_api_decoder() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (1, 2, 3)).save(buffer, "PNG")
    pixels = build.decode(buffer.getvalue(), ServingSettings())
    assert pixels.shape == (4, 6, 3) and pixels[0, 0].tolist() == [1, 2, 3]


@pytest.fixture
def mirror(tmp_path: Path) -> ServingSettings:
    """A Tiny-ImageNet folder of six val images (unpacked layout)."""
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for n in range(6):
        Image.new("RGB", (64, 64), (40 * n, 0, 0)).save(root / "val" / "images" / f"val_{n}.JPEG", "JPEG")
        lines.append(f"val_{n}.JPEG\tn0{n % 2}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "words.txt").write_text("n00\tzero\nn01\tone\n")
    return ServingSettings(datasets_mirror_dir=tmp_path)


def test_the_split_is_even_for_the_reference_and_odd_held_out(mirror: ServingSettings) -> None:
    reference = [meta["filename"] for _, meta in build.tiny_imagenet_split(mirror, held_out=False)]
    held_out = [meta["filename"] for _, meta in build.tiny_imagenet_split(mirror, held_out=True)]
    assert reference == ["val_0.JPEG", "val_2.JPEG", "val_4.JPEG"]
    assert held_out == ["val_1.JPEG", "val_3.JPEG", "val_5.JPEG"]


def test_tiny_imagenet_reference_lists_its_files(mirror: ServingSettings) -> None:
    profile = build.tiny_imagenet_reference("classifier", "v2", limit=2, seed=0, settings=mirror, pool=pool())
    assert profile.n == 2
    assert set(profile.extra["files"]) <= {"val_0.JPEG", "val_2.JPEG", "val_4.JPEG"}
    assert "even" in profile.source and "2 of 3" in profile.source


def test_the_command_writes_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = build.build_reference_for("classifier", "v2", images(3), source="test", pool=pool())
    calls: list[tuple[str, str, int, int]] = []

    def fake(model: str, version: str, *, limit: int, seed: int, settings: ServingSettings) -> ReferenceProfile:
        calls.append((model, version, limit, seed))
        return made

    monkeypatch.setattr(cli, "tiny_imagenet_reference", fake)
    assert cli.main(["reference", "classifier", "--version", "v2", "--limit", "3", "--out", str(tmp_path)]) == 0
    assert calls == [("classifier", "v2", 3, 0)]
    assert ReferenceProfile.load(tmp_path / "classifier-v2.json") == made


def test_folder_reference_samples_the_folder(tmp_path: Path) -> None:
    for n in range(4):
        Image.new("RGB", (12, 9), (50 * n, 0, 0)).save(tmp_path / f"{n}.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    profile = build.folder_reference("classifier", "v2", tmp_path, limit=3, settings=ServingSettings(), pool=pool())
    assert profile.n == 3 and profile.image["width"] == [12.0] * 3
    assert set(profile.extra["files"]) <= {f"{n}.jpg" for n in range(4)}


def test_folder_reference_refuses_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images"):
        build.folder_reference("classifier", "v2", tmp_path, settings=ServingSettings(), pool=pool())


def test_the_command_profiles_a_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = build.build_reference_for("classifier", "v2", images(2), source="test", pool=pool())
    seen: list[Path] = []

    def fake(model: str, version: str, folder: Path, **kwargs: object) -> ReferenceProfile:
        seen.append(folder)
        return made

    monkeypatch.setattr(cli, "folder_reference", fake)
    argv = ["reference", "detector", "--version", "v1", "--folder", str(tmp_path / "coco"), "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert seen == [tmp_path / "coco"] and (tmp_path / "detector-v1.json").is_file()
