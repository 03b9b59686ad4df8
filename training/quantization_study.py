"""Measure INT8 variants against FP32 and write the quantization report of a model.

Usage::

    python -m training.quantization_study detector   # -> artifacts/yolox_nano/quantization.json
    python -m training.quantization_study embedder   # -> artifacts/efficientnet_lite0_imagenet1k/quantization.json
                                                     #    and model.int8.onnx (the chosen variant)

Every variant is quantized with :func:`training.quantize.quantize_model` and evaluated with
:mod:`training.evaluate` (the serving pipeline): the detector by COCO mAP on the 128 held-out
val2017 images, the embedder by precision@10 on the 10,000 Tiny-ImageNet val images. The
report lists every variant with its settings, metric, delta to FP32, file size, single-image
latency and calibration images. The chosen variant is the best one (mAP@0.5:0.95 for the
detector, precision@10 for the embedder; a smaller file breaks ties). The detector's import
builds the chosen recipe itself (``training/yolox_build.py``; the import refuses another one); the
embedder's chosen file is copied next to the FP32 file and committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from services.models.specs import lite0, yolox
from services.models.store import sha256_file
from training.quantize import YOLOX_HEAD, QuantizeConfig, calibration_pool, quantize_model
from training.serving import DEFAULT_THREADS, Kind, build_model, serving_spec
from training.settings import TrainingSettings, get_training_settings

log = logging.getLogger("training.quantization_study")

DETECTOR_GOAL = 0.015  # the most mAP@0.5:0.95 INT8 may lose
LITE0_HEAD = ("model.conv_head.",)  # the 1x1 head conv; after it: pooling, L2 norm, classifier
Variant = tuple[str, str, QuantizeConfig]
COCO_POOL, TINY_POOL = "COCO128 train2017", "Tiny-ImageNet train"
TASK_NAMES = ("detector", "classifier", "embedder")  # card sections, keyed as training/model_card.py reads them


def detector_variants() -> list[Variant]:
    """Per-tensor first, then per-channel, float head, float stem, and the three calibration methods."""

    def pc(method: str = "minmax", **kw: Any) -> QuantizeConfig:
        return QuantizeConfig(method=method, per_channel=True, **kw)

    head: dict[str, Any] = {"exclude_after": YOLOX_HEAD}
    return [
        ("minmax_per_tensor", "everything quantized, one weight scale per tensor", QuantizeConfig()),
        ("minmax_per_channel", "everything quantized, per-channel weights", pc()),
        ("minmax_pc_head", "head in float: prediction convs and all after them", pc(**head)),
        ("percentile_pc_head", "as above, 99.999th percentile ranges", pc("percentile", **head)),
        ("entropy_pc_head", "as above, entropy (KL) ranges", pc("entropy", **head)),
        ("minmax_pc_head_stemconv", "head and the stem conv in float", pc(exclude_upto="Mul_43", **head)),
        ("minmax_pc_head_upto55", "head, stem and dark2's downsampling in float", pc(exclude_upto="Mul_55", **head)),
        ("minmax_pc_head_stem", "head, stem and the whole dark2 stage in float", pc(exclude_upto="Mul_69", **head)),
        ("minmax_pt_head_stem", "as above with per-tensor weights", QuantizeConfig(exclude_upto="Mul_69", **head)),
        ("minmax_pc_head_upto101", "head, stem, dark2 and half of dark3 in float", pc(exclude_upto="Add_101", **head)),
        ("percentile_pc_stem", "stem and dark2 in float, head quantized", pc("percentile", exclude_upto="Mul_69")),
        ("percentile_pc_head_stem", "head, stem and dark2 in float, percentile ranges",
         pc("percentile", exclude_upto="Mul_69", **head)),
        ("entropy_pc_head_stem", "head, stem and dark2 in float, entropy ranges",
         pc("entropy", exclude_upto="Mul_69", **head)),
        ("percentile_pc_head_upto101", "head, stem, dark2 and half of dark3 in float",
         pc("percentile", exclude_upto="Add_101", **head)),
    ]  # fmt: skip


def embedder_variants(count: int) -> list[Variant]:
    """The Lite0 file (ReLU6, depthwise convs): per-tensor, per-channel, the three methods, a float head."""
    return [
        ("minmax_per_tensor", "everything quantized, one weight scale per tensor", QuantizeConfig(count=count)),
        ("minmax_per_channel", "per-channel weights", QuantizeConfig(count=count, per_channel=True)),
        ("percentile_per_channel", "per-channel, 99.999th percentile ranges",
         QuantizeConfig(method="percentile", count=count, per_channel=True)),
        ("entropy_per_channel", "per-channel, entropy (KL) ranges",
         QuantizeConfig(method="entropy", count=count, per_channel=True)),
        ("minmax_pc_float_head", "per-channel; the head conv, pooling and L2 norm in float",
         QuantizeConfig(count=count, per_channel=True, exclude_after=LITE0_HEAD)),
    ]  # fmt: skip


def latency_ms(path: Path, shape: tuple[int, ...], runs: int = 20) -> float:
    """Median single-image ONNX Runtime time on one CPU thread (a shared machine: indicative only)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    session.run(None, {name: batch})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: batch})
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 2)


Metric = Callable[[Path, str], dict[str, Any]]


def run_study(
    kind: Kind, src: Path, variants: Sequence[Variant], metric: Metric, pool: list[Path], work: Path
) -> dict[str, Any]:
    """FP32 then every variant: quantize, evaluate, time; returns the report without a choice."""
    settings = get_training_settings()
    spec = serving_spec(kind, src, settings.artifacts_dir)
    shape = (1, 3, spec.input.height, spec.input.width)
    fp32 = {**metric(src, "fp32"), "bytes": src.stat().st_size, "latency_ms": latency_ms(src, shape)}
    log.info("fp32: %s", fp32)
    rows = []
    for name, description, config in variants:
        out = work / f"{name}.onnx"
        started = time.perf_counter()
        built = quantize_model(src, out, spec.input, pool, config)
        seconds = round(time.perf_counter() - started, 1)
        measured = metric(out, "int8")
        row = {
            "name": name,
            "description": description,
            **{k: v for k, v in measured.items() if isinstance(v, float)},
            **{f"delta_{k}": round(v - fp32[k], 4) for k, v in measured.items() if isinstance(v, float)},
            "bytes": built["output"]["bytes"],
            "size_vs_fp32": round(built["output"]["bytes"] / fp32["bytes"], 3),
            "latency_ms": latency_ms(out, shape),
            "sha256": built["output"]["sha256"],
            "settings": built["settings"],
            "excluded_nodes": built["excluded_nodes"],
            "qdq_nodes": built["qdq_nodes"],
            "calibration_images": built["calibration"]["count"],
            "calibration": built["calibration"],
            "quantize_seconds": seconds,
        }
        log.info("%s: %s", name, {k: row[k] for k in row if k.startswith(("map", "delta", "precision", "bytes"))})
        rows.append(row)
    return {"model": kind, "source": {"file": src.name, "sha256": sha256_file(src)}, "fp32": fp32, "variants": rows}


def best(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The row with the highest ``metric``; the smaller file wins a tie."""
    return max(rows, key=lambda row: (row[metric], -row["bytes"]))


def finish_detector(report: dict[str, Any]) -> dict[str, Any]:
    """Add the evaluation, the choice and whether it meets the goal to a detector study."""
    chosen = best(report["variants"], "map50_95")
    report["evaluation"] = "COCO mAP@0.5:0.95 / @0.5, 128 held-out val2017 images (898 boxes), served pipeline"
    report["goal"] = {"max_map50_95_loss": DETECTOR_GOAL, "met": -chosen["delta_map50_95"] <= DETECTOR_GOAL}
    report["chosen"] = chosen
    return report


def _recipe(row: dict[str, Any], pool: str) -> dict[str, Any]:
    """A variant's settings as the model card lists them."""
    settings = row["settings"]
    return {
        "recipe": row["name"],
        "format": f"{settings['quant_format']}, activations {settings['activation_type']}, "
        f"weights {settings['weight_type']}" + (" per channel" if settings["per_channel"] else " per tensor"),
        "calibration": f"{settings['method']}"
        + (f" {settings['percentile']}" if settings["method"] == "percentile" else "")
        + f", {row['calibration_images']} {pool} images (seed {settings['seed']})",
        "float_nodes": len(row["excluded_nodes"]),
    }


def card_sections(report: dict[str, Any]) -> dict[str, Any]:
    """Per-model sections that ``training/model_card.py`` merges into the model cards (the rest it ignores)."""
    chosen, kind = report["chosen"], report["model"]
    study = {"variants_tried": len(report["variants"]), "report": "quantization.json (every variant, settings, sizes)"}
    if kind == "detector":
        note = (
            "built at import from the mirror file (bentos/detector/import_model.py), not committed; the sha256 is "
            "the measuring machine's build (calibration on another CPU differs in the last bits, the recipe does not)"
        )
        return {
            "detector": {
                "metrics": {"int8": {"map50_95": chosen["map50_95"], "map50": chosen["map50"]}},
                "files": {"int8": {"name": yolox.INT8_FILE, "bytes": chosen["bytes"],
                                   "sha256": chosen["sha256"], "note": note}},
                "quantization": {**_recipe(chosen, COCO_POOL), **study, "goal_met": str(report["goal"]["met"])},
            }
        }  # fmt: skip
    file = {"name": chosen["file"], "bytes": chosen["bytes"], "sha256": chosen["sha256"]}
    return {
        "embedder": {
            "metrics": {
                "fp32": {"precision_at_10": report["fp32"]["precision_at_10"]},
                "int8": {"precision_at_10": chosen["precision_at_10"]},
            },
            "files": {"int8": file},
            "quantization": {**_recipe(chosen, TINY_POOL), **study},
        },
        "classifier": {
            "files": {"int8": {**file, "note": "the embedder's INT8 file (chosen by precision@10)"}},
            "quantization": _recipe(chosen, TINY_POOL),
        },
    }


def detector_report(
    settings: TrainingSettings, work: Path, variants: Sequence[Variant] | None = None
) -> dict[str, Any]:
    """The detector study over ``variants`` (default: :func:`detector_variants`)."""
    from services.models.importer import verify_checksum
    from training.data.coco import locate_coco128
    from training.evaluate import detector_map
    from training.yolox_batch import make_batch_dynamic

    mirror = settings.model_mirror_dir / yolox.SOURCE_FILE
    verify_checksum(mirror, yolox.SOURCE_SHA256)
    src = work / yolox.DYNAMIC_FILE
    make_batch_dynamic(mirror, src)
    root = locate_coco128(settings.data_dir, settings.datasets_mirror_dir)

    def metric(path: Path, precision: str) -> dict[str, Any]:
        spec = serving_spec("detector", path, settings.artifacts_dir, precision=precision)
        model = build_model(spec, path, precision=precision)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in detector_map(model, root).items()}

    variants = detector_variants() if variants is None else variants
    report = finish_detector(run_study("detector", src, variants, metric, calibration_pool("detector", settings), work))
    return report | card_sections(report)


def embedder_report(
    settings: TrainingSettings,
    work: Path,
    out_dir: Path,
    *,
    count: int = 256,
    limit: int | None = None,
    variants: Sequence[Variant] | None = None,
) -> dict[str, Any]:
    """The embedder study; the best precision@10 is chosen and copied to ``out_dir/model.int8.onnx``."""
    from training.evaluate import embedder_precision, tiny_imagenet_samples

    src = settings.artifacts_dir / lite0.EXPORT_DIR / "model.onnx"
    samples = tiny_imagenet_samples(limit)

    def metric(path: Path, precision: str) -> dict[str, Any]:
        spec = serving_spec("embedder", path, settings.artifacts_dir, precision=precision)
        model = build_model(spec, path, precision=precision, threads=DEFAULT_THREADS)
        result = embedder_precision(model, samples)
        return {**result, "precision_at_10": round(result["precision_at_10"], 4)}

    variants = embedder_variants(count) if variants is None else variants
    report = run_study("embedder", src, variants, metric, calibration_pool("embedder", settings), work)
    chosen = best(report["variants"], "precision_at_10")
    shutil.copyfile(work / f"{chosen['name']}.onnx", out_dir / lite0.INT8_FILE)
    report["evaluation"] = f"retrieval precision@10 (cosine), Tiny-ImageNet val, {len(samples)} images, each a query"
    report["chosen"] = {**chosen, "file": lite0.INT8_FILE}
    return report | card_sections(report)


def ordered(report: dict[str, Any]) -> dict[str, Any]:
    """The report's keys in reading order: what, how measured, FP32, the choice, then every variant."""
    first = ["model", "evaluation", "source", "fp32", "goal", "chosen", *TASK_NAMES, "variants"]
    return {k: report[k] for k in first if k in report} | {k: v for k, v in report.items() if k not in first}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.quantization_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("detector", "embedder"))
    parser.add_argument("--out", type=Path, default=None, help="report path (default: the model's artifacts folder)")
    parser.add_argument("--work", type=Path, default=None, help="where variant files go (default: a temp folder)")
    parser.add_argument("--count", type=int, default=256, help="embedder calibration images")
    parser.add_argument("--limit", type=int, default=None, help="embedder: first N val images (default: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_training_settings()
    folder = yolox.ARTIFACTS if args.kind == "detector" else lite0.EXPORT_DIR
    out = args.out or settings.artifacts_dir / folder / "quantization.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantization-study-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.kind == "detector":
            report = detector_report(settings, work)
        else:
            report = embedder_report(settings, work, out.parent, count=args.count, limit=args.limit)
    report["onnxruntime"] = ort.__version__
    out.write_text(json.dumps(ordered(report), indent=2) + "\n")
    log.info("wrote %s (chosen: %s)", out, report["chosen"]["name"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
