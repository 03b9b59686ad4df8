"""training/tensorrt.py: a clear error without TensorRT; real FP16 and INT8 engines where a GPU is lent."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.unit.conftest import write_tiny_onnx
from training import tensorrt as trt_build
from training.tensorrt_options import calibration_batches

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the behaviour without TensorRT")
def test_build_without_tensorrt_raises_a_clear_error(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(trt_build.TensorRTUnavailable, match="pip install tensorrt"):
        trt_build.build_engine(tiny_onnx, tmp_path / "m.plan", precision="fp16", batches=[1, 8])
    assert not (tmp_path / "m.plan").exists()


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the behaviour without TensorRT")
def test_cli_without_tensorrt_exits_2_and_says_why(
    tiny_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="training.tensorrt"):
        code = trt_build.main(["build", "--onnx", str(tiny_onnx), "--precision", "fp16", "--out", str(tmp_path / "m")])
    assert code == 2
    assert "TensorRT is not installed" in caplog.text


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the behaviour without TensorRT")
def test_latency_without_tensorrt_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(trt_build.TensorRTUnavailable):
        trt_build.measure_latency(tmp_path / "missing.plan", [1])


def test_calibration_loader_needs_a_stored_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.models.store.list_versions", lambda name: [])
    with pytest.raises(LookupError, match="make import-models"):
        trt_build.calibration_loader("detector:v9")


@pytest.fixture
def gpu() -> None:
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _static_onnx(path: Path) -> Path:
    """The tiny graph with fixed H and W (TensorRT profiles need every other axis fixed)."""
    import onnx

    model = onnx.load(str(write_tiny_onnx(path)))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (8, 8), strict=True):
        dim.Clear()
        dim.dim_value = value
    onnx.save(model, str(path))
    return path


@pytest.mark.gpu
def test_fp16_engine_builds_and_is_timed_at_each_batch(gpu: None, tmp_path: Path) -> None:
    onnx_path = _static_onnx(tmp_path / "tiny.onnx")
    engine = trt_build.build_engine(onnx_path, tmp_path / "tiny.plan", precision="fp16", batches=[1, 4])
    assert engine.stat().st_size > 0
    latency = trt_build.measure_latency(engine, [1, 4], iterations=5, warmup=1)
    assert set(latency) == {1, 4}
    assert all(point["p50_ms"] > 0 and point["throughput"] > 0 for point in latency.values())


@pytest.mark.gpu
def test_int8_engine_calibrates_then_reuses_its_cache(gpu: None, tmp_path: Path) -> None:
    onnx_path = _static_onnx(tmp_path / "tiny.onnx")
    cache = tmp_path / "tiny.calib"
    images = np.random.default_rng(0).uniform(-1, 1, (16, 3, 8, 8)).astype(np.float32)
    calibrator = trt_build.entropy_calibrator(calibration_batches(images, 4), 4, cache)
    trt_build.build_engine(
        onnx_path, tmp_path / "a.plan", precision="int8", batches=[1, 4], calibrator=calibrator, calib_batch=4
    )
    assert cache.stat().st_size > 0
    from_cache = trt_build.entropy_calibrator(None, 4, cache)  # no images: the ranges come from the cache
    engine = trt_build.build_engine(
        onnx_path, tmp_path / "b.plan", precision="int8", batches=[1, 4], calibrator=from_cache, calib_batch=4
    )
    assert engine.stat().st_size > 0
