"""A symbolic batch axis for the real YOLOX-Nano file (the model mirror)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.unit.training.test_yolox_batch import _dims
from training.settings import get_training_settings
from training.yolox_batch import batch_parity, make_batch_dynamic, make_size_dynamic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def mirror_file() -> Path:
    path = get_training_settings().model_mirror_dir / "yolox_nano.onnx"
    if not path.is_file():
        pytest.skip(f"model mirror not found at {path}")
    return path


def test_the_yolox_file_runs_a_batch_of_four_like_four_single_runs(mirror_file: Path, tmp_path: Path) -> None:
    from services.models.preprocessing import prepare
    from training.serving import read_rgb, serving_spec

    dst = tmp_path / "yolox_nano.dynamic.onnx"
    info = make_batch_dynamic(mirror_file, dst)
    assert info["reshapes_rewritten"] == 3  # the head's three [1, 85, -1]
    model = onnx.load(str(dst))
    assert _dims(model.graph.input[0]) == ["batch", 3, 416, 416]
    assert _dims(model.graph.output[0]) == ["batch", 3549, 85]
    spec = serving_spec("detector", dst, get_training_settings().artifacts_dir)  # a fixed 416 x 416: the whole canvas
    assert spec.input.letterbox is not None and spec.input.letterbox.stride == 0
    coco = get_training_settings().data_dir / "datasets" / "coco128" / "images" / "val2017"
    paths = sorted(coco.glob("*.jpg"))[:4]
    if len(paths) == 4:
        batch = np.stack([prepare(read_rgb(p), spec.input).tensor for p in paths])
    else:  # COCO not unpacked: letterbox-grey canvases with noise
        rng = np.random.default_rng(0)
        batch = np.clip(114 + rng.normal(0, 40, (4, 3, 416, 416)), 0, 255).astype(np.float32)
    assert batch_parity(mirror_file, dst, batch) <= 1e-4


def test_the_yolox_file_of_symbolic_size_runs_a_smaller_canvas(mirror_file: Path, tmp_path: Path) -> None:
    """What the import serves: 416 x 416 exactly as the mirror file, and a 3:4 photo's 416 x 320 canvas in 2,730 rows
    (52 x 40 + 26 x 20 + 13 x 10 cells) at 0.77x the work."""
    import onnxruntime as ort

    dst = tmp_path / "yolox_nano.dynamic.onnx"
    make_batch_dynamic(mirror_file, dst)
    make_size_dynamic(dst, {"output": {1: "anchors"}})
    model = onnx.load(str(dst))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(model.graph.output[0]) == ["batch", "anchors", 85]
    rng = np.random.default_rng(0)
    batch = np.clip(114 + rng.normal(0, 40, (2, 3, 416, 416)), 0, 255).astype(np.float32)
    assert batch_parity(mirror_file, dst, batch) <= 1e-4
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.ascontiguousarray(batch[:, :, :, :320])})[0].shape == (2, 2730, 85)
