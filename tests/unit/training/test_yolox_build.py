"""The detector files' recipe, cache key and mirror check (the real build: tests/integration/training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.models.specs import yolox
from training import yolox_build
from training.quantize import YOLOX_HEAD, QuantizeConfig

REPO = Path(__file__).resolve().parents[3]
SMALL = QuantizeConfig(count=2, per_channel=True, exclude_upto="Mul_69", exclude_after=YOLOX_HEAD)


def test_a_mirror_file_with_another_checksum_is_refused(tmp_path: Path) -> None:
    (tmp_path / yolox.SOURCE_FILE).write_bytes(b"not the published export")
    dirs = {"model_mirror_dir": tmp_path, "datasets_mirror_dir": tmp_path, "data_dir": tmp_path / "data"}
    with pytest.raises(ValueError, match="expected"):
        yolox_build.detector_files(**dirs, config=SMALL)
    assert not (tmp_path / "data").exists()


def test_the_cache_key_follows_the_recipe() -> None:
    assert yolox_build.cache_key(SMALL) == yolox_build.cache_key(QuantizeConfig(**vars(SMALL)))
    assert yolox_build.cache_key(SMALL) != yolox_build.cache_key(QuantizeConfig(count=3, per_channel=True))
    folder = yolox_build.build_folder(Path("/d"), SMALL)
    assert folder == Path("/d/models/detector") / yolox_build.cache_key(SMALL)


def test_the_committed_report_measured_the_import_recipe() -> None:
    """The recipe the import builds is the one whose INT8 metrics it takes (else it refuses, see test_yolox.py)."""
    path = REPO / "artifacts" / yolox.QUANTIZATION_REPORT
    if not path.is_file():
        pytest.skip("no quantization report yet")
    chosen = json.loads(path.read_text())["chosen"]
    built = {"settings": yolox_build.int8_config().settings(), "calibration": chosen["calibration"]}
    assert yolox.recipe(built) == yolox.recipe(chosen)
    assert chosen["calibration"]["count"] == yolox_build.int8_config().count
