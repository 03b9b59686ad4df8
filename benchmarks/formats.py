"""Format benchmark: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (vs TensorRT on a GPU), per model.

Writes benchmarks/reports/formats.md, formats.json and formats.png (rendered by benchmarks/formats_report.py);
see --help. Latency and throughput are measured
here, at each batch size, in one process with the same thread count for every format; accuracy is not: it is read
from each model's metrics JSON (training/model_card.py, with quantization.json merged in).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/formats.py` must find services/ and training/

from benchmarks.formats_eager import EAGER_BUILDERS, ModelPlan, NotMeasured  # noqa: E402
from benchmarks.formats_plans import accuracy, build_plans  # noqa: E402
from benchmarks.formats_report import write_reports  # noqa: E402
from kernel.paths import display_path  # noqa: E402
from services.config import ServingSettings  # noqa: E402
from services.models.catalogue import MODEL_NAMES  # noqa: E402
from services.models.runtime import OrtRunner  # noqa: E402
from services.models.store import sha256_file  # noqa: E402
from training.tensorrt_options import latency_stats  # noqa: E402

log = logging.getLogger("benchmarks.formats")
MODELS = MODEL_NAMES  # the catalogue's; OUTPUT_OF and VALUE_RANGE say what each file is measured on
FORMATS = ("pytorch", "onnx-fp32", "onnx-int8", "tensorrt-fp16", "tensorrt-int8")
OUTPUT_OF = {"classifier": "logits", "detector": "output", "embedder": "embeddings"}
# Input value ranges after preprocessing: Lite0 (x - 127) / 128, YOLOX raw 0-255.
VALUE_RANGE = {"classifier": (-1.0, 1.0), "detector": (0.0, 255.0), "embedder": (-1.0, 1.0)}
PARITY_TOLERANCE = 1e-3  # eager vs ONNX FP32, relative to the largest output magnitude
Run = Callable[[np.ndarray], np.ndarray]


# ---- measuring -------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return sha256_file(path)


def file_facts(path: Path) -> dict[str, Any]:
    return {"path": display_path(path), "bytes": path.stat().st_size, "sha256": sha256(path)}


def input_shape(path: Path) -> tuple[int | None, tuple[int, int, int]]:
    """(fixed batch or None, (C, H, W)) of an ONNX file's first input."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(values) != 4 or any(v is None for v in values[1:]):
        raise ValueError(f"{path.name}: expected an N x C x H x W input with fixed C, H, W, got {values}")
    return values[0], (int(values[1]), int(values[2]), int(values[3]))  # type: ignore[arg-type]


def one_at_a_time(run: Run, fixed: int | None) -> Run:
    """Runs a batch in slices of the file's fixed batch size (the YOLOX mirror file: 1)."""
    if fixed is None:
        return run
    return lambda batch: np.concatenate([run(batch[i : i + fixed]) for i in range(0, len(batch), fixed)])


def time_batches(run: Run, inputs: dict[int, np.ndarray], iterations: int, warmup: int) -> dict[int, dict[str, float]]:
    """p50/p95 ms per call and images/s at each batch size, after ``warmup`` untimed calls."""
    results = {}
    for batch, x in inputs.items():
        samples = []
        for i in range(warmup + iterations):
            started = time.perf_counter()
            run(x)
            if i >= warmup:
                samples.append((time.perf_counter() - started) * 1000)
        results[batch] = latency_stats(samples, batch)
        log.info(
            "  batch %d: p50 %.2f ms, %.1f images/s", batch, results[batch]["p50_ms"], results[batch]["throughput"]
        )
    return results


def ort_runner(path: Path, model: str, args: argparse.Namespace) -> OrtRunner:
    """The serving runner (same session options as the services), on the model's served output."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = [o.name for o in graph.output]
    output = OUTPUT_OF[model] if OUTPUT_OF[model] in outputs else outputs[0]
    return OrtRunner(
        path, input_name=graph.input[0].name, output_name=output, providers=args.ort_providers, threads=args.threads
    )


def measure_eager(
    plan: ModelPlan, inputs: dict[int, np.ndarray], reference: Run, fixed: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Eager PyTorch, if its outputs match ONNX FP32 on the first input."""
    try:
        eager = EAGER_BUILDERS[plan.name](plan)
    except ImportError as exc:
        raise NotMeasured(f"{exc.name} is not installed (the train extra)") from exc
    probe = inputs[min(inputs)]
    run = one_at_a_time(eager, fixed)
    expected, got = reference(probe), run(probe)
    if expected.shape != got.shape:
        hint = " (a fine-tuned classifier needs --classifier-torch-state)" if plan.name == "classifier" else ""
        raise NotMeasured(f"PyTorch output shape {got.shape} differs from ONNX FP32's {expected.shape}{hint}")
    diff = float(np.abs(expected - got).max())
    if diff > PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise NotMeasured(f"PyTorch outputs differ from ONNX FP32 (max abs diff {diff:.3g}): not the same model")
    return {
        "size_bytes": eager.weights_bytes,
        "size_note": "state-dict tensors",
        "parity_max_abs_diff": diff,
        "batches": time_batches(run, inputs, args.iterations, args.warmup),
    }


def measure_tensorrt(
    source: Path, precision: str, inputs: dict[int, np.ndarray], fixed: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    """A TensorRT engine built from ``source`` (INT8: from the Q/DQ file's own scales) and timed on the GPU."""
    from training.tensorrt import TensorRTUnavailable, build_engine, measure_latency

    batches = [b for b in inputs if fixed is None or b == fixed]
    if not batches:
        raise NotMeasured(f"the file's batch is fixed at {fixed}")
    try:
        with tempfile.TemporaryDirectory(prefix="formats-trt-") as tmp:
            engine = build_engine(source, Path(tmp) / f"{precision}.plan", precision=precision, batches=batches)  # type: ignore[arg-type]
            size = engine.stat().st_size
            timed = measure_latency(engine, batches, iterations=args.iterations, warmup=args.warmup)
    except TensorRTUnavailable as exc:
        raise NotMeasured(str(exc)) from exc
    note = f"batch fixed at {fixed}: only batch {fixed} measured" if fixed else ""
    return {"size_bytes": size, "size_note": "engine", "batches": timed, "note": note}


def measure_model(plan: ModelPlan, args: argparse.Namespace) -> dict[str, Any]:
    """Every requested format of one model at every batch size."""
    fixed, chw = input_shape(plan.fp32)
    low, high = VALUE_RANGE[plan.name]
    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(low, high, (b, *chw)).astype(np.float32) for b in args.batches}
    files = {"onnx-fp32": file_facts(plan.fp32), **({"onnx-int8": file_facts(plan.int8)} if plan.int8 else {})}
    fp32 = ort_runner(plan.fp32, plan.name, args)
    results: dict[str, Any] = {}
    for name in args.formats:
        log.info("%s %s", plan.name, name)
        try:
            results[name] = {"status": "measured", **measure_format(name, plan, inputs, fp32, fixed, args)}
        except NotMeasured as exc:
            log.warning("%s %s not measured: %s", plan.name, name, exc)
            results[name] = {"status": "not measured", "reason": str(exc)}
    notes = list(plan.notes)  # after the formats: building one may add a note (where eager weights came from)
    if fixed is not None:
        notes.append(
            f"`{plan.fp32.name}` fixes its batch at {fixed}: a batch of N runs as N / {fixed} calls, "
            "in every format, so batching saves nothing here."
        )
    return {
        "input": list(chw),
        "fixed_batch": fixed,
        "files": files,
        "notes": notes,
        "formats": results,
        "accuracy": accuracy(plan),
    }


def measure_format(
    name: str,
    plan: ModelPlan,
    inputs: dict[int, np.ndarray],
    fp32: OrtRunner,
    fixed: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    if name == "pytorch":
        return measure_eager(plan, inputs, fp32, fixed, args)
    if name == "onnx-fp32":
        return {
            "size_bytes": plan.fp32.stat().st_size,
            "size_note": "file",
            "batches": time_batches(fp32, inputs, args.iterations, args.warmup),
        }
    if name == "onnx-int8":
        if plan.int8 is None:
            raise NotMeasured("no INT8 file (training/quantize.py makes one)")
        runner = ort_runner(plan.int8, plan.name, args)
        return {
            "size_bytes": plan.int8.stat().st_size,
            "size_note": "file",
            "batches": time_batches(runner, inputs, args.iterations, args.warmup),
        }
    if name == "tensorrt-int8" and plan.int8 is None:
        raise NotMeasured("no INT8 (Q/DQ) file to build from")
    source = plan.fp32 if name == "tensorrt-fp16" else plan.int8
    assert source is not None
    return measure_tensorrt(source, name.removeprefix("tensorrt-"), inputs, fixed, args)


# ---- machine facts ---------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    cpu = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
    facts: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": (cpu or ["unknown"])[0],
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load average (1 min) at start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        **{
            p: _version(p)
            for p in ("onnxruntime", "onnxruntime-gpu", "torch", "timm", "onnx2torch", "tensorrt", "numpy")
        },
        "ort providers": ", ".join(args.ort_providers),
    }
    with suppress(Exception):
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def set_threads(threads: int) -> None:
    """PyTorch gets the same intra-op threads as each ORT session (inter-op 1 for both)."""
    with suppress(ImportError):
        import torch

        torch.set_num_threads(threads)
        with suppress(RuntimeError):  # only settable before the first parallel region
            torch.set_num_interop_threads(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every plan; the JSON report."""
    set_threads(args.threads)
    settings = ServingSettings()
    plans = build_plans(args, settings)
    results: dict[str, Any] = {
        "machine": machine_facts(args),
        "settings": {
            "threads": args.threads,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "batches": args.batches,
            "formats": args.formats,
            "quick": args.quick,
            "parity_tolerance": PARITY_TOLERANCE,
        },
        "models": {},
    }
    for plan in plans:
        results["models"][plan.name] = measure_model(plan, args)
    results["machine"]["load average (1 min) at end"] = round(os.getloadavg()[0], 2)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--models", nargs="+", choices=MODELS, default=list(MODELS))
    add("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    add("--batches", type=int, nargs="+", default=[1, 8, 32])
    add("--threads", type=int, default=2, help="ORT intra-op threads = torch threads")
    add("--iterations", type=int, default=50, help="timed calls per format and batch")
    add("--warmup", type=int, default=10, help="untimed calls first")
    add("--quick", action="store_true", help="smoke test: 3 timed calls after 1 warm-up, batches 1 and 8")
    add("--ort-providers", nargs="+", default=["CPUExecutionProvider"])
    for model in MODELS:
        add(f"--{model}-onnx", type=Path, help=f"{model} FP32 ONNX (default: see the module)")
        add(f"--{model}-int8", type=Path, help=f"{model} INT8 ONNX")
        add(f"--{model}-metrics", type=Path, help=f"{model} metrics JSON (accuracy column)")
    add("--classifier-torch-state", type=Path, help="state_dict of the fine-tuned timm tf_efficientnet_lite0")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "formats.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup = 3, 1
        if args.batches == [1, 8, 32]:
            args.batches = [1, 8]
    if min(args.batches) < 1 or args.threads < 1 or args.iterations < 1 or args.warmup < 0:
        parser.error("batches, threads and iterations must be >= 1, warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    started = time.monotonic()
    results = run(args)
    results["machine"]["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    for path in write_reports(results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
