"""The pure-Python half of the TensorRT build (:mod:`training.tensorrt`): no TensorRT needed.

The command line, the optimization profile for a dynamic batch axis, INT8 calibration batches over
preprocessed real images, and latency statistics. Kept apart so it is unit-tested on machines
without a GPU; :mod:`training.tensorrt` holds the calls into TensorRT itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from services.models.spec import InputSpec

Precision = Literal["fp16", "int8"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_BATCHES = (1, 8, 32)


def parse_batches(text: str) -> tuple[int, ...]:
    """Parses ``"1,8,32"`` into sorted, distinct positive batch sizes.

    Raises:
        argparse.ArgumentTypeError: On an empty list, a non-integer or a size below 1.
    """
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from exc
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return tuple(sizes)


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes of one TensorRT optimization profile: the engine accepts min..max, tuned for opt."""

    min: int
    opt: int
    max: int

    @classmethod
    def from_batches(cls, batches: Sequence[int]) -> BatchProfile:
        """Smallest and largest served batch; tuned for the middle one (8 of 1, 8, 32)."""
        ordered = sorted(batches)
        if not ordered or ordered[0] < 1:
            raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
        return cls(min=ordered[0], opt=ordered[len(ordered) // 2], max=ordered[-1])


def parse_size(text: str) -> tuple[int, int]:
    """``"416,416"`` -> (416, 416): an image height and width, both positive."""
    try:
        height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected a positive H,W, got {text!r}")
    return height, width


def profile_shapes(
    input_shape: Sequence[int | str | None], profile: BatchProfile, size: tuple[int, int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes for a profile over the first (batch) axis.

    Args:
        input_shape: The network input's shape as the ONNX parser reports it: -1 (TensorRT),
            a name or None (ONNX) for a dynamic axis, an int for a fixed one.
        profile: The batch sizes.
        size: (height, width) for an N x C x H x W input whose height and width are dynamic (the detector's import
            makes them so, for serving's letterbox of whole strides): the engine is built at that one size.

    Raises:
        ValueError: When an axis other than the batch is dynamic and ``size`` does not fix it (this module only
            builds engines over image tensors of one size), or when a fixed batch axis cannot take the profile's
            batches.
    """
    batch, *rest = input_shape
    if size is not None and len(rest) == 3:
        rest = [
            rest[0],
            *(d if isinstance(d, int) and d > 0 else fixed for d, fixed in zip(rest[1:], size, strict=True)),
        ]
    if any(not isinstance(dim, int) or dim < 1 for dim in rest):
        shape = list(input_shape)
        raise ValueError(
            f"only the batch axis may be dynamic, got input shape {shape} (a symbolic image size: --image-size)"
        )
    dims = tuple(int(dim) for dim in rest)  # type: ignore[arg-type]  # checked above
    if isinstance(batch, int) and batch > 0 and (profile.min, profile.max) != (batch, batch):
        raise ValueError(f"the input's batch axis is fixed at {batch}: use --batch {batch} (and --calib-batch {batch})")
    return (profile.min, *dims), (profile.opt, *dims), (profile.max, *dims)


def calibration_batches(
    items: Sequence[object], batch_size: int, load: Callable[[Sequence[object]], np.ndarray] = np.asarray
) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of exactly ``batch_size`` for an INT8 calibrator.

    TensorRT's calibrator must hand over full batches, so a last partial batch is left out.

    Args:
        items: Preprocessed images (an N x C x H x W array) or anything ``load`` turns into them,
            such as image paths.
        batch_size: Images per batch.
        load: Turns a slice of ``items`` into an array; lazily, one batch at a time.

    Raises:
        ValueError: When there are fewer items than one batch.
    """
    full = len(items) // batch_size if batch_size > 0 else 0
    if full == 0:
        raise ValueError(f"{len(items)} calibration images cannot fill one batch of {batch_size}")
    for start in range(0, full * batch_size, batch_size):
        yield np.ascontiguousarray(load(items[start : start + batch_size]), dtype=np.float32)


def image_files(folder: Path, limit: int | None = None) -> list[Path]:
    """Image files directly in or below ``folder``, sorted by path so calibration is reproducible."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return found[:limit] if limit else found


def preprocess_images(paths: Sequence[Path], spec: InputSpec) -> np.ndarray:
    """Decodes images as an upload is decoded and preprocesses them as serving does: N x C x H x W float32."""
    from services.imaging import decode_image
    from services.models.preprocessing import prepare

    if spec.letterbox is not None and spec.letterbox.stride:  # an engine takes one size: the whole canvas
        spec = spec.model_copy(update={"letterbox": spec.letterbox.model_copy(update={"stride": 0})})
    limit = 1 << 31  # local files we chose: no upload limits
    pixels = (
        decode_image(Path(p).read_bytes(), declared_type=None, max_bytes=limit, max_pixels=limit).pixels for p in paths
    )
    return np.stack([prepare(rgb, spec).tensor for rgb in pixels])


def latency_stats(samples_ms: Sequence[float], batch: int) -> dict[str, float]:
    """p50 and p95 of per-call latencies, and images per second over all timed calls."""
    if not samples_ms:
        raise ValueError("no latency samples")
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "throughput": float(batch * len(a) / (a.sum() / 1000.0)),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The ``python -m training.tensorrt`` command line."""
    parser = argparse.ArgumentParser(prog="python -m training.tensorrt", description="TensorRT engines from ONNX files")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build a serialized FP16 or INT8 engine")
    build.add_argument("--onnx", type=Path, required=True, help="ONNX file with a dynamic (or fixed) batch axis")
    build.add_argument("--precision", choices=["fp16", "int8"], required=True)
    build.add_argument("--out", type=Path, required=True, help="engine file to write")
    build.add_argument("--batch", type=parse_batches, default=DEFAULT_BATCHES, help="served batch sizes, e.g. 1,8,32")
    build.add_argument("--calib-images", type=Path, help="INT8: folder of real images to calibrate on")
    build.add_argument("--calib-cache", type=Path, help="INT8: calibration cache, read when present, else written")
    build.add_argument("--calib-limit", type=int, default=512, help="INT8: at most this many calibration images")
    build.add_argument("--calib-batch", type=int, default=8, help="INT8: images per calibration batch")
    build.add_argument(
        "--model-tag", help="INT8: model-store tag (e.g. detector:v2) whose metadata gives the preprocessing"
    )
    build.add_argument(
        "--image-size",
        type=parse_size,
        help="H,W: the size to build at when the file's image size is symbolic (the detector's import: 416,416)",
    )
    build.add_argument("--workspace-gib", type=float, default=4.0, help="builder workspace limit")

    bench = commands.add_parser("latency", help="time an engine at each batch size")
    bench.add_argument("--engine", type=Path, required=True)
    bench.add_argument("--batch", type=parse_batches, default=DEFAULT_BATCHES)
    bench.add_argument("--iterations", type=int, default=100)
    bench.add_argument("--warmup", type=int, default=10)

    args = parser.parse_args(argv)
    if args.command == "build":
        check_build_args(parser, args)
    return args


def check_build_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """INT8 needs either a calibration cache that exists or images plus the model whose preprocessing they need."""
    if args.precision != "int8":
        if args.calib_images or args.calib_cache:
            parser.error("--calib-images and --calib-cache apply to --precision int8 only")
        return
    if args.calib_cache is None:
        parser.error("--precision int8 needs --calib-cache (read when present, written otherwise)")
    if not args.calib_cache.is_file() and not (args.calib_images and args.model_tag):
        parser.error(f"{args.calib_cache} does not exist yet: give --calib-images and --model-tag to calibrate")
    if args.calib_images and not args.calib_images.is_dir():
        parser.error(f"--calib-images {args.calib_images} is not a folder")
    if args.calib_batch < 1:
        parser.error("--calib-batch must be >= 1")
