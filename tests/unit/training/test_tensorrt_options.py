"""The pure-Python half of the TensorRT build: arguments, batch profiles, calibration batches, statistics."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.models.spec import InputSpec, Letterbox
from training.tensorrt_options import (
    BatchProfile,
    calibration_batches,
    image_files,
    latency_stats,
    parse_args,
    parse_batches,
    parse_size,
    preprocess_images,
    profile_shapes,
)


@pytest.mark.parametrize(("text", "expected"), [("1,8,32", (1, 8, 32)), ("32, 1,8,8", (1, 8, 32)), ("4", (4,))])
def test_parse_batches_sorts_and_deduplicates(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["", "0,8", "-1", "one,8", "1.5"])
def test_parse_batches_refuses_bad_lists(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_batches(text)


@pytest.mark.parametrize(
    ("batches", "profile"),
    [((1, 8, 32), BatchProfile(1, 8, 32)), ((32, 1), BatchProfile(1, 32, 32)), ((4,), BatchProfile(4, 4, 4))],
)
def test_batch_profile_spans_min_to_max_tuned_for_the_middle(batches: tuple[int, ...], profile: BatchProfile) -> None:
    assert BatchProfile.from_batches(batches) == profile


@pytest.mark.parametrize("batches", [(), (0, 8)])
def test_batch_profile_refuses_empty_or_zero(batches: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        BatchProfile.from_batches(batches)


@pytest.mark.parametrize("batch_dim", [-1, "batch", None])
def test_profile_shapes_over_a_dynamic_batch_axis(batch_dim: int | str | None) -> None:
    shapes = profile_shapes((batch_dim, 3, 224, 224), BatchProfile(1, 8, 32))
    assert shapes == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))


def test_profile_shapes_on_a_fixed_batch_of_one_accepts_only_batch_one() -> None:
    assert profile_shapes((1, 3, 416, 416), BatchProfile(1, 1, 1)) == ((1, 3, 416, 416),) * 3
    with pytest.raises(ValueError, match="fixed at 1: use --batch 1"):
        profile_shapes((1, 3, 416, 416), BatchProfile(1, 8, 32))


def test_profile_shapes_refuses_other_dynamic_axes() -> None:
    with pytest.raises(ValueError, match="only the batch axis may be dynamic"):
        profile_shapes((-1, 3, "height", 224), BatchProfile(1, 8, 32))


def test_profile_shapes_builds_a_symbolic_image_size_at_the_size_given() -> None:
    """The detector's import makes its height and width symbolic; an engine is built at one size (--image-size)."""
    shapes = profile_shapes((-1, 3, "height", "width"), BatchProfile(1, 8, 32), size=(416, 416))
    assert shapes == ((1, 3, 416, 416), (8, 3, 416, 416), (32, 3, 416, 416))
    assert profile_shapes((-1, 3, 224, 224), BatchProfile(1, 1, 1), size=(416, 416))[0] == (1, 3, 224, 224)


@pytest.mark.parametrize(("text", "expected"), [("416,416", (416, 416)), ("320, 416", (320, 416))])
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["416", "0,416", "a,b", "1,2,3"])
def test_parse_size_refuses_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_preprocess_images_takes_the_whole_canvas_for_a_strided_letterbox(tmp_path: Path) -> None:
    """One engine, one size: calibration batches of photos of other aspect ratios still stack."""
    from PIL import Image

    from services.models.specs.yolox import detector_input

    for name, size in (("wide.jpg", (64, 48)), ("tall.jpg", (48, 64))):
        Image.new("RGB", size, (90, 30, 200)).save(tmp_path / name)
    batch = preprocess_images([tmp_path / "wide.jpg", tmp_path / "tall.jpg"], detector_input())
    assert batch.shape == (2, 3, 416, 416)


def test_calibration_batches_are_full_contiguous_float32_and_drop_the_remainder() -> None:
    images = np.arange(10 * 3 * 2 * 2, dtype=np.float64).reshape(10, 3, 2, 2)
    batches = list(calibration_batches(images, 4))
    assert [b.shape for b in batches] == [(4, 3, 2, 2), (4, 3, 2, 2)]
    assert all(b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), images[:8].astype(np.float32))


def test_calibration_batches_load_lazily_one_batch_at_a_time() -> None:
    loaded: list[list[str]] = []

    def load(names: object) -> np.ndarray:
        loaded.append(list(names))  # type: ignore[call-overload]
        return np.zeros((len(loaded[-1]), 3, 1, 1))

    stream = calibration_batches(["a", "b", "c", "d", "e"], 2, load)
    assert loaded == []
    next(stream)
    assert loaded == [["a", "b"]]
    assert len(list(stream)) == 1
    assert loaded == [["a", "b"], ["c", "d"]]


@pytest.mark.parametrize(("count", "batch"), [(3, 4), (0, 1), (4, 0)])
def test_calibration_batches_need_at_least_one_full_batch(count: int, batch: int) -> None:
    with pytest.raises(ValueError, match="cannot fill one batch"):
        next(calibration_batches(np.zeros((count, 3, 1, 1)), batch))


def test_image_files_are_sorted_filtered_and_limited(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == ["a.PNG", "b.jpg", "sub/c.jpeg"]
    assert len(image_files(tmp_path, limit=2)) == 2


def test_image_files_in_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images"):
        image_files(tmp_path)


def test_preprocess_images_follows_the_input_spec(tmp_path: Path) -> None:
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 20), colour).save(paths[-1])
    spec = InputSpec(
        height=16, width=16, color_order="BGR", resize="letterbox", interpolation="cv2_linear", letterbox=Letterbox()
    )
    batch = preprocess_images(paths, spec)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    # BGR order: the red image has its red in channel 2; letterbox pads the bottom half with 114.
    assert batch[0, 2, 0, 0] == 255 and batch[0, 0, 0, 0] == 0
    assert batch[1, 0, 0, 0] == 255
    assert batch[0, 0, -1, 0] == 114


def test_latency_stats_percentiles_and_throughput() -> None:
    stats = latency_stats([10.0] * 19 + [30.0], batch=8)
    assert stats["p50_ms"] == 10.0
    assert stats["p95_ms"] == pytest.approx(11.0)
    assert stats["throughput"] == pytest.approx(8 * 20 / 0.220)


def test_latency_stats_without_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no latency samples"):
        latency_stats([], batch=1)


def test_parse_args_fp16_build_with_defaults(tmp_path: Path) -> None:
    args = parse_args(["build", "--onnx", "m.onnx", "--precision", "fp16", "--out", str(tmp_path / "m.plan")])
    assert (args.command, args.precision, args.batch) == ("build", "fp16", (1, 8, 32))
    assert args.onnx == Path("m.onnx")


def test_parse_args_int8_with_images_and_a_new_cache(tmp_path: Path) -> None:
    argv = ["build", "--onnx", "m.onnx", "--precision", "int8", "--out", "m.plan", "--batch", "1,8"]
    argv += [
        "--calib-images",
        str(tmp_path),
        "--calib-cache",
        str(tmp_path / "new.cache"),
        "--model-tag",
        "detector:v1",
    ]
    args = parse_args(argv)
    assert args.batch == (1, 8) and args.model_tag == "detector:v1" and args.calib_batch == 8


def test_parse_args_int8_from_an_existing_cache_alone(tmp_path: Path) -> None:
    cache = tmp_path / "m.cache"
    cache.write_bytes(b"TRT-calibration")
    args = parse_args(
        ["build", "--onnx", "m.onnx", "--precision", "int8", "--out", "m.plan", "--calib-cache", str(cache)]
    )
    assert args.calib_images is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp16", "--calib-cache", "c"], "apply to --precision int8 only"),
        (["--precision", "int8"], "needs --calib-cache"),
        (["--precision", "int8", "--calib-cache", "missing.cache"], "does not exist yet"),
        (
            ["--precision", "int8", "--calib-cache", "c", "--calib-images", "nowhere", "--model-tag", "x:v1"],
            "is not a folder",
        ),
        (
            [
                "--precision",
                "int8",
                "--calib-cache",
                "c",
                "--calib-images",
                ".",
                "--model-tag",
                "x:v1",
                "--calib-batch",
                "0",
            ],
            "must be >= 1",
        ),
        (["--precision", "fp32"], "invalid choice"),
    ],
)
def test_parse_args_refuses_inconsistent_builds(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["build", "--onnx", "m.onnx", "--out", "m.plan", *extra])
    assert message in capsys.readouterr().err


def test_parse_args_latency_command() -> None:
    args = parse_args(["latency", "--engine", "m.plan", "--batch", "1", "--iterations", "5"])
    assert (args.command, args.batch, args.iterations, args.warmup) == ("latency", (1,), 5, 10)
