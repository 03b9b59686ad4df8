"""The drift benchmark's pieces: shifts, the feature cache, window evaluation and the report."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import drift, drift_data
from benchmarks.drift_report import write_report
from services.config import ServingSettings
from services.drift.features import image_statistics
from services.models.registry import ModelPool
from tests.unit.fakes import FakeFactory, FakeRunner, make_entry
from tests.unit.services.drift.synthetic import reference, rows


def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def test_the_shifts_do_what_their_names_say() -> None:
    base = image_statistics(photo())
    shifted = {name: image_statistics(shift(photo())) for name, shift in drift_data.SHIFTS.items()}
    assert shifted["none"] == base
    assert shifted["darkened"]["brightness"] == pytest.approx(base["brightness"] / 2, rel=0.05)
    assert shifted["blurred"]["blur"] < shifted["blurred r1"]["blur"] < base["blur"]
    assert shifted["grey"]["saturation"] < 0.01
    assert shifted["jpeg q75"]["width"] == 32.0


def pool() -> ModelPool:
    return ModelPool(
        "classifier",
        [make_entry(name="classifier", version="v2", labels=["a", "b", "c"])],
        FakeFactory({("v2", "fp32"): FakeRunner([0.0, 1.0, 2.0])}),
    )


def test_the_feature_cache_runs_the_model_once(tmp_path: Path) -> None:
    made: list[int] = []

    def factory() -> ModelPool:
        made.append(1)
        return pool()

    cache = drift_data.FeatureCache(tmp_path, factory, "v2")
    first = cache.rows("set one", lambda: [photo(), photo()])
    second = drift_data.FeatureCache(tmp_path, factory, "v2").rows("set one", lambda: [])
    assert first == second and len(first) == 2 and made == [1]
    assert (tmp_path / "v2-set_one.json.gz").is_file()


def test_decoded_decodes_then_shifts() -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo()).save(buffer, "PNG")
    (grey,) = drift_data.decoded([buffer.getvalue()], ServingSettings(), drift_data.SHIFTS["grey"])
    assert grey.shape == (32, 32, 3) and np.array_equal(grey[..., 0], grey[..., 1])


def test_evaluate_counts_verdicts_and_fired_tests() -> None:
    profile = reference()
    same = drift.evaluate(profile, rows(300, 1), windows=3, size=150, seed=0)
    moved = drift.evaluate(profile, rows(300, 2, brightness=0.3), windows=2, size=150, seed=0)
    few = drift.evaluate(profile, rows(50, 3), windows=1, size=100, seed=0)
    assert same["windows"] == 3 and same["drift"] + same["no_drift"] == 1.0 and not same["with_replacement"]
    assert moved["drift"] == 1.0 and moved["fired"]["ks:brightness"] == 1.0
    assert few["with_replacement"] and few["distinct_images"] == 50


def test_the_report_has_a_row_per_result() -> None:
    result = {
        "split": "evaluation",
        "shift": "grey",
        "windows": 50,
        "window_size": 500,
        "distinct_images": 2500,
        "with_replacement": False,
        "drift": 1.0,
        "no_drift": 0.0,
        "fired": {"ks:saturation": 1.0},
        "check_s_median": 0.2,
    }
    text = write_report(
        {
            "reference": {"model": "classifier", "version": "v2", "n": 2000, "source": "val"},
            "results": [result, {**result, "shift": "COCO photos", "with_replacement": True, "fired": {}}],
            "wall_s": 12.0,
            "args": {"eval_images": 2500},
            "machine": {"nproc": 2},
        }
    )
    assert "| evaluation | grey | 50 | 500 | 2500 | 100.0% | 0.0% | ks:saturation 100% | 200 |" in text
    assert "500 (resampled)" in text and "| none |" in text.split("COCO photos")[1]


def _mirror(root: Path) -> None:
    """A Tiny-ImageNet mirror of twelve val images and a train archive, and one unpacked COCO photo."""
    import tarfile

    tiny = root / "mirror" / "tiny-imagenet-200"
    (tiny / "val" / "images").mkdir(parents=True)
    lines = []
    for n in range(12):
        Image.fromarray(np.full((16, 16, 3), 20 * n, dtype=np.uint8)).save(tiny / "val" / "images" / f"val_{n}.JPEG")
        lines.append(f"val_{n}.JPEG\tn0{n % 2}\t0\t0\t15\t15")
    (tiny / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    with tarfile.open(tiny / "train-250pc-000.tar.gz", "w:gz") as archive:
        for n in range(3):
            archive.add(tiny / "val" / "images" / f"val_{n}.JPEG", arcname=f"train/n00/images/n00_{n}.JPEG")
    coco = root / "data" / "coco128" / "images" / "val2017"
    coco.mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 90, dtype=np.uint8)).save(coco / "000000000001.jpg")


def test_the_benchmark_runs_end_to_end_on_a_small_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.drift.build import tiny_imagenet_reference
    from services.drift.reference import reference_path

    _mirror(tmp_path)
    settings = ServingSettings(datasets_mirror_dir=tmp_path / "mirror", data_dir=tmp_path / "data")
    profile = tiny_imagenet_reference("classifier", "v2", limit=2, settings=settings, pool=pool())
    profile.save(reference_path(tmp_path / "ref", "classifier", "v2"))
    monkeypatch.setattr(drift, "REFERENCE_DIR", tmp_path / "ref")
    monkeypatch.setattr(drift, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(drift, "get_settings", lambda: settings)
    monkeypatch.setattr(drift, "build_pool", lambda name, settings: pool())
    monkeypatch.setattr(drift, "machine_facts", lambda: {"nproc": 2})
    argv = ["--version", "v2", "--window", "3", "--windows", "2", "--shifted-windows", "1", "--tune-images", "3"]
    argv += ["--eval-images", "3"]
    assert drift.main([*argv, "--extra-images", "2"]) == 0
    report = (tmp_path / "reports" / "drift.md").read_text()
    assert "| tuning | none | 2 | 3 | 3 |" in report
    assert "COCO photos, all 1 distinct" in report and "Tiny-ImageNet train" in report
    assert len(drift_data.tiny_train(settings, per_class=2)) == 2
