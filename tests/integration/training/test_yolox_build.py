"""The detector files built from the mirror: dynamic-batch FP32 and INT8, cached, rebuilt to the same bytes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from services.models.specs import yolox
from services.models.store import sha256_file
from tests.unit.training.test_yolox_build import SMALL
from training import yolox_build
from training.quantize import count_ops
from training.settings import TrainingSettings, get_training_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _dirs(settings: TrainingSettings, data_dir: Path) -> dict[str, Path]:
    return {
        "model_mirror_dir": settings.model_mirror_dir,
        "datasets_mirror_dir": settings.datasets_mirror_dir,
        "data_dir": data_dir,
    }


def test_files_are_built_once_then_reused_and_rebuilt_identically(tmp_path: Path) -> None:
    """Determinism on one machine: the same inputs give the same bytes (what the model store's checksums need)."""
    settings = get_training_settings()
    if not (settings.model_mirror_dir / yolox.SOURCE_FILE).is_file():
        pytest.skip(f"model mirror not found at {settings.model_mirror_dir}")
    if not (settings.datasets_mirror_dir / "coco128" / "coco128.tar.gz").is_file():
        pytest.skip(f"COCO mirror not found at {settings.datasets_mirror_dir}")
    dirs = _dirs(settings, tmp_path / "data")
    files = yolox_build.detector_files(**dirs, config=SMALL)
    assert set(files) == {"fp32", "int8"} and files["fp32"].parent == files["int8"].parent
    for precision in ("fp32", "int8"):  # the batch and the image size symbolic (ADR 0022)
        dims = onnx.load(str(files[precision])).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert count_ops(files["int8"])["QuantizeLinear"] > 0
    build = yolox_build.build_record(files)
    assert build["batch_parity_max_abs"] <= yolox_build.BATCH_PARITY_TOLERANCE
    assert build["int8"]["calibration"]["count"] == 2
    assert build["int8"]["output"]["sha256"] == sha256_file(files["int8"])  # the record describes the cached file
    sums = {p: sha256_file(f) for p, f in files.items()}
    stamps = {p: f.stat().st_mtime_ns for p, f in files.items()}
    assert yolox_build.detector_files(**dirs, config=SMALL) == files
    assert {p: f.stat().st_mtime_ns for p, f in files.items()} == stamps  # reused, not rebuilt
    files["int8"].unlink()  # an interrupted build: rebuilt, to the same bytes
    rebuilt = yolox_build.detector_files(**dirs, config=SMALL)
    assert {p: sha256_file(f) for p, f in rebuilt.items()} == sums
    assert [p.name for p in files["fp32"].parent.parent.iterdir()] == [files["fp32"].parent.name]  # no leftovers
