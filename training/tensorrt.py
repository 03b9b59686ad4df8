"""TensorRT FP16 and INT8 engines from the ONNX exports, and a latency check.

Usage::

    python -m training.tensorrt build --onnx artifacts/efficientnet_lite0_imagenet1k/model.onnx \\
        --precision fp16 --out engines/lite0.fp16.plan --batch 1,8,32
    python -m training.tensorrt build --onnx MODEL.onnx --precision int8 --out engines/model.int8.plan \\
        --calib-images DIR --calib-cache engines/model.calib --model-tag classifier:v1
    python -m training.tensorrt latency --engine engines/lite0.fp16.plan --batch 1,8,32

TensorRT needs an NVIDIA GPU (``pip install tensorrt`` with CUDA 12, plus torch with CUDA for the
device buffers). It is imported only when a function here runs, and its absence raises
:class:`TensorRTUnavailable`. Everything that runs without it (arguments, profiles, calibration
batches, statistics) is in :mod:`training.tensorrt_options`, unit-tested; the lines here run
only where a GPU is lent (``tests/unit/training/test_tensorrt.py``, marker ``gpu``).

Serving does not load these engines: ONNX Runtime's TensorRT execution provider builds and caches
its own (``services/models/runtime.py``). These files are for measuring what TensorRT gives and for
deployments that run TensorRT directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from training.tensorrt_options import (
    BatchProfile,
    Precision,
    calibration_batches,
    image_files,
    latency_stats,
    parse_args,
    profile_shapes,
)

LOG = logging.getLogger("training.tensorrt")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or a CUDA device) is not available in this environment."""


class EngineBuildError(RuntimeError):
    """The ONNX parser or the TensorRT builder refused the network."""


def load_tensorrt() -> ModuleType:
    """Imports ``tensorrt`` or raises :class:`TensorRTUnavailable` saying what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed: engines are built on a machine with an NVIDIA GPU after "
            "`pip install tensorrt` (CUDA 12) and torch with CUDA. Serving on CPU does not need it."
        ) from exc
    return tensorrt


def build_engine(
    onnx_path: Path,
    out: Path,
    *,
    precision: Precision,
    batches: Sequence[int],
    calibrator: Any = None,
    calib_batch: int = 8,
    workspace_gib: float = 4.0,
    image_size: tuple[int, int] | None = None,
) -> Path:
    """Parses an ONNX file into an explicit-batch network and writes a serialized engine.

    Args:
        onnx_path: The ONNX file.
        out: Where the engine goes.
        precision: ``fp16``; or ``int8`` (with FP16 for layers without INT8 kernels). INT8 takes
            its ranges from ``calibrator``, or from the Q/DQ nodes of a quantized ONNX file when
            ``calibrator`` is None.
        batches: Served batch sizes: the optimization profile spans their min..max, tuned for the
            middle one.
        calibrator: An :func:`entropy_calibrator`, for INT8 from an FP32 file.
        calib_batch: The calibrator's batch size (its calibration profile is fixed at it).
        workspace_gib: Builder workspace limit.

    Raises:
        EngineBuildError: With the parser's errors, or when the builder returns nothing.
    """
    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch and deprecate the flag; 8.x needs it.
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.add_optimization_profile(_profile(builder, network, batches, image_size))
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibrator is not None:
            config.int8_calibrator = calibrator
            # TensorRT calibrates at the calibration profile's opt shape: fix it at the calibrator's batch.
            config.set_calibration_profile(_profile(builder, network, [calib_batch], image_size))

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build a {precision} engine from {onnx_path} (see its log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    LOG.info(
        "%s engine written: %s (%d bytes, %.0f s)", precision, out, out.stat().st_size, time.perf_counter() - started
    )
    return out


def _profile(builder: Any, network: Any, batches: Sequence[int], size: tuple[int, int] | None = None) -> Any:
    """An optimization profile giving every network input the batch range of ``batches`` (and ``size`` to a symbolic
    image size)."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        profile.set_shape(tensor.name, *profile_shapes(tuple(tensor.shape), BatchProfile.from_batches(batches), size))
    return profile


def entropy_calibrator(batches: Iterator[np.ndarray] | None, batch_size: int, cache: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` to the GPU, with a read/write cache file.

    When ``cache`` exists TensorRT reads the ranges from it and asks for no batch (``batches`` may
    be None then); otherwise it calibrates on every batch and the cache is written for next time.
    """
    trt = load_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("INT8 calibration needs a CUDA device; torch sees none")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]  # a runtime module
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_batch: torch.Tensor | None = None  # kept alive while TensorRT reads it

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(batches, None) if batches is not None else None
            if batch is None:
                return None
            self.device_batch = torch.from_numpy(batch).cuda()
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))
            LOG.info("calibration cache written: %s", cache)

    return EntropyCalibrator()


def calibration_loader(model_tag: str) -> Any:
    """A function turning image paths into a batch, preprocessed as the model-store entry ``model_tag`` says."""
    from services.models.store import list_versions
    from training.tensorrt_options import preprocess_images

    name, _, version = model_tag.partition(":")
    entries = [e for e in list_versions(name) if not version or e.spec.version == version]
    if not entries:
        raise LookupError(f"no model-store entry {model_tag}: run `make import-models` first")
    spec = entries[-1].spec.input
    return lambda paths: preprocess_images(paths, spec)


def measure_latency(engine_path: Path, batches: Sequence[int], *, iterations: int = 100, warmup: int = 10) -> dict:
    """p50/p95 latency and images/s of one engine at each batch size (device buffers, one CUDA stream).

    Returns:
        ``{batch: {"p50_ms", "p95_ms", "throughput"}}``; inputs are zeros (time does not depend on them).
    """
    trt = load_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT latency needs a CUDA device; torch sees none")
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    stream = torch.cuda.Stream()
    results: dict[int, dict[str, float]] = {}
    for batch in batches:
        buffers = {}
        for name in inputs:
            shape = (batch, *tuple(engine.get_tensor_shape(name))[1:])
            context.set_input_shape(name, shape)
            buffers[name] = torch.zeros(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)), device="cuda")
        for name in (n for n in names if n not in inputs):
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)), device="cuda")
        for name, tensor in buffers.items():
            context.set_tensor_address(name, tensor.data_ptr())
        samples = []
        for i in range(warmup + iterations):
            started = time.perf_counter()
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            if i >= warmup:
                samples.append((time.perf_counter() - started) * 1000)
        results[batch] = latency_stats(samples, batch)
        LOG.info("%s batch %d: %s", engine_path.name, batch, results[batch])
    return results


def _torch_dtype(trt: ModuleType, dtype: Any) -> Any:
    import torch

    return torch.from_numpy(np.empty(0, dtype=trt.nptype(dtype))).dtype


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.command == "latency":
            result = measure_latency(args.engine, args.batch, iterations=args.iterations, warmup=args.warmup)
            print(json.dumps(result, indent=2))
            return 0
        calibrator = None
        if args.precision == "int8":
            batches = None
            if args.calib_images:
                paths = image_files(args.calib_images, args.calib_limit)
                batches = calibration_batches(paths, args.calib_batch, calibration_loader(args.model_tag))
            calibrator = entropy_calibrator(batches, args.calib_batch, args.calib_cache)
        build_engine(
            args.onnx,
            args.out,
            precision=args.precision,
            batches=args.batch,
            calibrator=calibrator,
            calib_batch=args.calib_batch,
            workspace_gib=args.workspace_gib,
            image_size=args.image_size,
        )
    except (TensorRTUnavailable, EngineBuildError, ValueError) as exc:
        LOG.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
