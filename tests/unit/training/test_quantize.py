"""INT8 static quantization on a tiny two-conv ONNX graph, calibrated on generated images (real file: integration)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from services.models.preprocessing import prepare
from services.models.spec import InputSpec
from services.models.store import sha256_file
from tests.unit.training.tiny_onnx import noise_images, tiny_model
from training import quantize
from training.quantize import QuantizeConfig

SPEC = InputSpec(name="images", height=16, width=16, scale=1 / 255)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return noise_images(tmp_path_factory.mktemp("calibration"), 6, height=20, width=24, seed=1)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("fp32") / "tiny.onnx")


def run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": batch})[0])


def batch_of(paths: list[Path]) -> np.ndarray:
    from training.serving import read_rgb

    return np.stack([prepare(read_rgb(p), SPEC).tensor for p in paths])


def graph(path: Path) -> tuple[dict[str, onnx.NodeProto], dict[str, onnx.NodeProto]]:
    """Nodes by name and by output tensor."""
    model = onnx.load(str(path))
    return {n.name: n for n in model.graph.node}, {o: n for n in model.graph.node for o in n.output}


def weight_producer(path: Path, conv: str) -> onnx.NodeProto | None:
    by_name, by_output = graph(path)
    return by_output.get(by_name[conv].input[1])


def test_int8_model_has_qdq_nodes_and_stays_close_to_fp32(fp32: Path, images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "tiny.int8.onnx"
    report = quantize.quantize_model(fp32, out, SPEC, images, QuantizeConfig(count=4, seed=3))
    ops = quantize.count_ops(out)
    assert ops["QuantizeLinear"] >= 2 and ops["DequantizeLinear"] >= 3
    assert report["qdq_nodes"] == ops["QuantizeLinear"] + ops["DequantizeLinear"]
    producer = weight_producer(out, "conv1")
    assert producer is not None and producer.op_type == "DequantizeLinear"
    assert onnx.load(str(out)).opset_import[0].version >= quantize.QDQ_MIN_OPSET  # upgraded from 11
    batch = batch_of(images)
    expected, got = run(fp32, batch), run(out, batch)
    assert got.shape == expected.shape == (6, 2)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    assert report["source"] == {"file": "tiny.onnx", "sha256": sha256_file(fp32), "bytes": fp32.stat().st_size}
    assert report["output"]["bytes"] == out.stat().st_size
    assert report["calibration"]["count"] == 4 and report["calibration"]["pool"] == 6
    assert report["calibration"]["images"] == [p.name for p in quantize.choose_calibration_images(images, 4, 3)]
    assert report["settings"]["activation_type"] == "QUInt8" and report["settings"]["weight_type"] == "QInt8"
    json.dumps(report)  # the report is JSON-ready


def test_same_config_and_images_give_the_same_bytes(fp32: Path, images: list[Path], tmp_path: Path) -> None:
    config = QuantizeConfig(count=3, seed=5, per_channel=True)
    first = quantize.quantize_model(fp32, tmp_path / "a.onnx", SPEC, images, config)
    second = quantize.quantize_model(fp32, tmp_path / "b.onnx", SPEC, list(reversed(images)), config)
    assert first["output"]["sha256"] == second["output"]["sha256"]


def test_per_channel_weights_carry_one_scale_per_output_channel(fp32: Path, images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "pc.onnx"
    quantize.quantize_model(fp32, out, SPEC, images, QuantizeConfig(count=2, per_channel=True))
    producer = weight_producer(out, "conv1")
    assert producer is not None
    scales = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}[producer.input[1]]
    assert scales.shape == (4,)
    assert run(out, batch_of(images)).shape == (6, 2)


@pytest.mark.parametrize(
    ("config", "floating"),
    [
        (QuantizeConfig(count=2, nodes_to_exclude=("conv2",)), ["conv2"]),
        (QuantizeConfig(count=2, exclude_after=("head.",)), ["conv2", "flat", "gap"]),
        (QuantizeConfig(count=2, exclude_upto="relu1"), ["conv1", "relu1"]),
    ],
    ids=["by-name", "after-head-weights", "up-to-node"],
)
def test_excluded_nodes_keep_float_weights(
    fp32: Path, images: list[Path], tmp_path: Path, config: QuantizeConfig, floating: list[str]
) -> None:
    out = tmp_path / "excluded.onnx"
    report = quantize.quantize_model(fp32, out, SPEC, images, config)
    assert report["excluded_nodes"] == floating
    for conv in ("conv1", "conv2"):
        producer = weight_producer(out, conv)
        quantized = producer is not None and producer.op_type == "DequantizeLinear"
        assert quantized == (conv not in floating), conv


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (QuantizeConfig(nodes_to_exclude=("conv9",)), "conv9"),
        (QuantizeConfig(exclude_after=("tail.",)), "tail."),
        (QuantizeConfig(exclude_upto="relu9"), "relu9"),
    ],
)
def test_unknown_nodes_to_exclude_are_refused(
    fp32: Path, images: list[Path], tmp_path: Path, config: QuantizeConfig, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        quantize.quantize_model(fp32, tmp_path / "x.onnx", SPEC, images, config)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_calibrate_in_equal_passes(
    fp32: Path, images: list[Path], tmp_path: Path, method: str
) -> None:
    out = tmp_path / f"{method}.onnx"
    config = QuantizeConfig(method=method, count=6, histogram_chunk=4, percentile=99.9)
    report = quantize.quantize_model(fp32, out, SPEC, images, config)
    assert report["settings"]["method"] == method and report["qdq_nodes"] > 0
    expected, got = run(fp32, batch_of(images)), run(out, batch_of(images))
    assert np.abs(got - expected).max() <= 0.2 * np.abs(expected).max()


def test_calibration_choice_is_seeded_sorted_and_capped() -> None:
    pool = [Path(f"{i:03d}.jpg") for i in range(50)]
    first = quantize.choose_calibration_images(list(reversed(pool)), 10, seed=0)
    assert first == quantize.choose_calibration_images(pool, 10, seed=0) == sorted(first)
    assert len(set(first)) == 10
    assert quantize.choose_calibration_images(pool, 10, seed=1) != first
    assert quantize.choose_calibration_images(pool, 500, seed=0) == pool
    with pytest.raises(ValueError, match="no calibration images"):
        quantize.choose_calibration_images([], 1, seed=0)


def test_config_refuses_unknown_methods_and_empty_calibration() -> None:
    with pytest.raises(ValueError, match="minmax"):
        QuantizeConfig(method="kl")
    with pytest.raises(ValueError, match=">= 1"):
        QuantizeConfig(count=0)


def test_config_settings_list_the_fixed_formats() -> None:
    settings = QuantizeConfig(exclude_after=("head.",), op_types=("Conv",)).settings()
    assert settings["exclude_after"] == ["head."] and settings["op_types"] == ["Conv"]
    assert settings["quant_format"] == "QDQ" and settings["onnxruntime"] == ort.__version__


def test_reader_feeds_preprocessed_images_one_at_a_time(images: list[Path]) -> None:
    reader = quantize.ImageCalibrationReader(images[:3], SPEC)
    assert len(reader) == 3
    first = reader.get_next()
    assert first is not None and first["images"].shape == (1, 3, 16, 16)
    assert first["images"].max() <= 1.0  # the spec's 1/255 scaling
    reader.set_range(2, 10)
    last = reader.get_next()
    assert last is not None and reader.get_next() is None
    reader.rewind()
    again = reader.get_next()
    assert again is not None and np.array_equal(again["images"], first["images"])


def test_chunk_is_the_largest_divisor_within_the_limit() -> None:
    assert [quantize._chunk(t, lim) for t, lim in [(128, 8), (6, 4), (7, 8), (7, 4)]] == [8, 3, 7, 1]
