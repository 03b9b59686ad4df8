"""Which files benchmarks/formats.py measures for each model, and the accuracy their metrics JSON records.

The classifier: the served Tiny-ImageNet release (``services.models.specs.lite0.SERVED``), else the ImageNet export;
the embedder: the ImageNet export; the detector: the dynamic-batch YOLOX files the detector import built, else the
batch-1 mirror file. A flag naming a model's FP32 file replaces its defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.formats_eager import ModelPlan
from kernel.paths import display_path
from services.config import ServingSettings
from services.models.specs import lite0

LITE0_IMAGENET, LITE0_TINY, YOLOX_DIR = "efficientnet_lite0_imagenet1k", lite0.finetuned_dir(lite0.SERVED), "yolox_nano"


def accuracy(plan: ModelPlan) -> dict[str, Any] | None:
    """The headline metric per precision from the model's metrics JSON (not measured here)."""
    if plan.metrics is None or not plan.metrics.is_file():
        return None
    from training.model_report import load_reports

    reports = [r for r in load_reports(plan.metrics, formats_path=None) if r.model == plan.name]
    if not reports or reports[-1].headline_metric is None:
        return None
    report, metric = reports[-1], reports[-1].headline_metric
    return {
        "metric": metric,
        "version": report.version,
        "source": display_path(plan.metrics),
        "fp32": report.metrics.fp32.get(metric),
        "int8": report.metrics.int8.get(metric),
        "measured_on": {p: f.name for p, f in report.files.items()},
    }


def _first(*paths: Path | None) -> Path | None:
    return next((p for p in paths if p is not None and p.is_file()), None)


def detector_files(settings: ServingSettings) -> tuple[Path, Path | None, list[str]]:
    """The dynamic-batch YOLOX FP32 and INT8 files when they exist, else the batch-1 mirror file.

    First choice: the files the detector import built from the mirror file (what serving runs).
    """
    import onnx

    from training.yolox_build import build_folder, int8_config

    built = build_folder(settings.data_dir, int8_config())
    folders = [built, settings.artifacts_dir / YOLOX_DIR, settings.data_dir, settings.data_dir / YOLOX_DIR]
    found = sorted({p for folder in folders for p in folder.glob("yolox*.onnx")})
    int8 = next((p for p in found if "int8" in p.name), None)

    def dynamic(path: Path) -> bool:
        dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
        return not dim.HasField("dim_value")

    fp32 = next((p for p in found if "int8" not in p.name and dynamic(p)), None)
    if fp32 is not None:
        return fp32, int8, []
    mirror = settings.model_mirror_dir / "yolox_nano.onnx"
    return (
        mirror,
        int8,
        [
            f"No dynamic-batch YOLOX file under {', '.join(map(display_path, folders))}: "
            f"the batch-1 mirror file `{mirror.name}` is used."
        ],
    )


def build_plans(args: argparse.Namespace, settings: ServingSettings) -> list[ModelPlan]:
    art = settings.artifacts_dir
    tiny, imagenet = art / LITE0_TINY, art / LITE0_IMAGENET
    classifier_dir = tiny if (tiny / "model.onnx").is_file() else imagenet
    det_fp32, det_int8, det_notes = detector_files(settings)
    defaults = {  # (fp32, int8, metrics, notes) when no flag names the FP32 file
        "classifier": (
            classifier_dir / "model.onnx",
            _first(classifier_dir / "model.int8.onnx"),
            classifier_dir / "metrics.json",
            [],
        ),
        "detector": (det_fp32, det_int8, art / YOLOX_DIR / "metrics.json", det_notes),
        "embedder": (imagenet / "model.onnx", _first(imagenet / "model.int8.onnx"), imagenet / "metrics.json", []),
    }
    plans = []
    for model in args.models:
        fp32, int8, metrics, notes = defaults[model]
        given = getattr(args, f"{model}_onnx")
        plans.append(
            ModelPlan(
                model,
                given or fp32,
                getattr(args, f"{model}_int8") or (None if given else int8),  # an INT8 default pairs with its FP32 only
                getattr(args, f"{model}_metrics") or metrics,
                args.classifier_torch_state if model == "classifier" else None,
                notes=[] if given else notes,
            )
        )
    return plans
