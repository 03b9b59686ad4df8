"""Accuracy of an ONNX file through the serving pipeline, in process.

Usage::

    python -m training.evaluate detector --onnx ../shared/models/yolox_nano.onnx [--out r.json]
    python -m training.evaluate embedder --onnx artifacts/efficientnet_lite0_imagenet1k/model.onnx
    python -m training.evaluate classifier --onnx model.onnx [--limit 1000]

- classifier: top-1 / top-5 over ``(image, label index)`` samples (Tiny-ImageNet val; label
  index = position in the sorted wnids, so it fits a model fine-tuned on those 200 classes).
- detector: COCO mAP@0.5:0.95 and mAP@0.5 (pycocotools) on the 128 held-out val2017 images
  with their YOLO labels: score threshold 0.001, class-aware NMS IoU 0.65, 100 detections.
- embedder: retrieval precision@10 on Tiny-ImageNet val: for each image, the share of its
  10 nearest other images (cosine) that have its class. ``--expand K`` searches with query expansion, as
  ``/search`` does (services/index/vectors.py); ``--split train`` measures on the first 50 train images of each
  class instead, which is where an embedder version's ``query_expansion`` is chosen, never on val. ``--flip`` embeds
  the mean of each image's and its mirror image's class probabilities (``EmbeddingOutput.flip``).

The model is the serving class built from the serving spec (:mod:`training.serving`), so
decoding, preprocessing and postprocessing are the served ones.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.index.vectors import expand_queries
from services.models.catalogue import entry
from services.models.classification import ClassifyParams
from services.models.contract import Model
from services.models.detection import DetectParams
from services.models.embedding import EmbedParams
from services.models.spec import EmbeddingOutput
from services.sequences import batched
from training.data.coco import locate_coco128, yolo_ground_truth
from training.serving import DEFAULT_THREADS, KINDS, Kind, build_model, read_rgb, serving_spec
from training.settings import get_training_settings

log = logging.getLogger("training.evaluate")

# The protocol behind the 0.339 reference (../shared/models/README.md).
MAP_PARAMS = DetectParams(confidence=0.001, iou=0.65, max_detections=100)
RETRIEVAL_K = 10
TRAIN_PER_CLASS = 50  # --split train: as many images of each class as val has

Samples = Sequence[tuple[Path, int]]


def top5_ids(model: Model[Any], samples: Samples, *, batch_size: int = 32) -> np.ndarray:
    """The served top-5 class indices of every sample (decode, preprocess, run, postprocess), N x 5."""
    params = ClassifyParams(top_k=5)
    rows: list[list[int]] = []
    for chunk in batched(samples, batch_size):
        predictions = model.infer([read_rgb(path) for path, _ in chunk], [params] * len(chunk))
        rows.extend([p["class_id"] for p in prediction.result["predictions"]] for prediction in predictions)
    return np.asarray(rows)


def classifier_accuracy(model: Model[Any], samples: Samples, *, batch_size: int = 32) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (fractions) of a classification model over ``samples``."""
    if not samples:
        raise ValueError("no samples to evaluate")
    truth = np.asarray([label for _, label in samples])
    return {**top_k_accuracy(top5_ids(model, samples, batch_size=batch_size), truth), "images": len(samples)}


def top_k_accuracy(top5: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) of N x 5 predicted class indices against N labels."""
    return {"top1": float((top5[:, 0] == truth).mean()), "top5": float((top5 == truth[:, None]).any(1).mean())}


def coco_evaluator(ground_truth: dict[str, Any], detections: list[dict[str, Any]]) -> Any:
    """A pycocotools bbox ``COCOeval`` of ``detections`` against ``ground_truth``, evaluated and accumulated.

    Returns None when there are no detections (pycocotools cannot load an empty result list).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_map(ground_truth: dict[str, Any], detections: list[dict[str, Any]]) -> dict[str, float]:
    """COCO mAP@0.5:0.95 and mAP@0.5 of ``detections`` (COCO result dicts) against ``ground_truth``."""
    evaluator = coco_evaluator(ground_truth, detections)
    if evaluator is None:
        return {"map50_95": 0.0, "map50": 0.0}
    return {"map50_95": float(evaluator.stats[0]), "map50": float(evaluator.stats[1])}


def to_coco_results(image_id: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """A served detection result -> COCO result dicts (``bbox`` as x, y, w, h)."""
    return [
        {
            "image_id": image_id,
            "category_id": d["class_id"],
            "score": d["score"],
            "bbox": [d["box"]["x1"], d["box"]["y1"], d["box"]["x2"] - d["box"]["x1"], d["box"]["y2"] - d["box"]["y1"]],
        }
        for d in result["detections"]
    ]


def detector_map(model: Model[Any], root: Path, *, split: str = "val2017", batch_size: int = 8) -> dict[str, Any]:
    """COCO mAP of a detection model on a YOLO split (the held-out val2017 images by default)."""
    ground_truth, paths = yolo_ground_truth(root, split)
    detections: list[dict[str, Any]] = []
    ids = list(range(1, len(paths) + 1))
    for chunk in batched(ids, batch_size):
        predictions = model.infer([read_rgb(paths[i - 1]) for i in chunk], [MAP_PARAMS] * len(chunk))
        for image_id, prediction in zip(chunk, predictions, strict=True):
            detections.extend(to_coco_results(image_id, prediction.result))
    return {
        **coco_map(ground_truth, detections),
        "images": len(paths),
        "boxes": len(ground_truth["annotations"]),
        "split": split,
        "detections": len(detections),
        "params": MAP_PARAMS.model_dump(),
    }


def embed_all(model: Model[Any], paths: Sequence[Path], *, batch_size: int = 32) -> np.ndarray:
    """Embeddings of ``paths`` (N x D float32) from an embedding model."""
    params = EmbedParams()
    rows: list[list[float]] = []
    for chunk in batched(paths, batch_size):
        rows.extend(
            p.result["embedding"] for p in model.infer([read_rgb(path) for path in chunk], [params] * len(chunk))
        )
    return np.asarray(rows, dtype=np.float32)


def neighbour_hits(
    embeddings: np.ndarray,
    labels: np.ndarray,
    k: int = RETRIEVAL_K,
    *,
    chunk: int = 1024,
    expand: int = 0,
    gallery: tuple[np.ndarray, np.ndarray] | None = None,
    alpha: float = 1.0,
) -> np.ndarray:
    """Per row, the share of its ``k`` nearest gallery rows (cosine) that share its label.

    The gallery is the rows themselves, each never finding itself (leave-one-out), unless ``gallery`` gives
    ``(vectors, labels)`` of its own. Rows are normalised here, so any non-zero embeddings work. Ties are broken by
    row order. ``expand`` > 0: each row is first expanded by its ``expand`` nearest gallery rows as the gallery index
    expands a query (:meth:`services.index.vectors.AdaptiveIndex.expanded`), each weighted by its cosine to the power
    ``alpha`` (1: the index's own weighting).
    """
    vectors = _unit_rows(embeddings)
    labels = np.asarray(labels)
    found, found_labels = (vectors, labels) if gallery is None else (_unit_rows(gallery[0]), np.asarray(gallery[1]))
    if gallery is None and len(found) <= k:
        raise ValueError(f"need more than k={k} embeddings, got {len(found)}")
    if len(found) < k:
        raise ValueError(f"need a gallery of at least k={k} rows, got {len(found)}")
    shares = np.empty(len(vectors), dtype=np.float64)
    for start in range(0, len(vectors), chunk):
        block = vectors[start : start + chunk]
        rows = np.arange(len(block))
        sims = block @ found.T
        if gallery is None:
            sims[rows, start + rows] = -np.inf  # never retrieve the query itself
        if expand > 0:
            nearest = np.argpartition(-sims, expand - 1, axis=1)[:, :expand]
            weights = np.clip(np.take_along_axis(sims, nearest, axis=1), 0.0, None) ** alpha  # itself: -inf -> 0
            sims = expand_queries(block, weights, found[nearest]) @ found.T
            if gallery is None:
                sims[rows, start + rows] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        shares[start + rows] = (found_labels[nearest] == labels[start + rows, None]).sum(axis=1) / k
    return shares


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    vectors = embeddings.astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def precision_at_k(
    embeddings: np.ndarray, labels: np.ndarray, k: int = RETRIEVAL_K, *, chunk: int = 1024, expand: int = 0
) -> float:
    """Mean share of each row's ``k`` nearest other rows (cosine) that share its label (:func:`neighbour_hits`)."""
    return float(neighbour_hits(embeddings, labels, k, chunk=chunk, expand=expand).mean())


def embedder_precision(
    model: Model[Any], samples: Samples, *, k: int = RETRIEVAL_K, batch_size: int = 32, expand: int = 0
) -> dict[str, Any]:
    """Retrieval precision@k of an embedding model over labelled images (each one a query)."""
    embeddings = embed_all(model, [path for path, _ in samples], batch_size=batch_size)
    labels = np.asarray([label for _, label in samples])
    precision = precision_at_k(embeddings, labels, k, expand=expand)
    return {f"precision_at_{k}": precision, "images": len(samples), "k": k, "expand": expand}


def tiny_imagenet_samples(
    limit: int | None = None, split: str = "val", per_class: int = TRAIN_PER_CLASS
) -> list[tuple[Path, int]]:
    """Tiny-ImageNet ``(path, label index)`` of a split: val in annotation order; ``limit`` keeps the first N.

    ``split="train"``: the first ``per_class`` train images of each class instead (by default as many as val has),
    for choices that must not look at val.
    """
    from training.data.tiny_imagenet import TinyImageNet, locate

    settings = get_training_settings()
    data = TinyImageNet(locate(settings.data_dir / "datasets", settings.datasets_mirror_dir))
    chosen = data.train(per_class=per_class) if split == "train" else data.val()
    samples = [(s.path, s.label) for s in chosen]
    return samples[:limit] if limit else samples


def evaluate(
    kind: Kind,
    onnx_path: Path,
    *,
    precision: str = "fp32",
    limit: int | None = None,
    threads: int = DEFAULT_THREADS,
    embedding: EmbeddingOutput | None = None,
    split: str = "val",
    expand: int = 0,
    per_class: int = TRAIN_PER_CLASS,
) -> dict[str, Any]:
    """Run the evaluation of ``kind`` on ``onnx_path``; returns its report (``embedding``: see ``serving_spec``)."""
    settings = get_training_settings()
    spec = serving_spec(kind, onnx_path, settings.artifacts_dir, precision=precision, embedding=embedding)
    model = build_model(spec, onnx_path, threads=threads)
    started = time.perf_counter()
    task = entry(kind).task
    if task == "detection":
        result = detector_map(model, locate_coco128(settings.data_dir, settings.datasets_mirror_dir))
    elif task == "embedding":
        result = embedder_precision(model, tiny_imagenet_samples(limit, split, per_class), expand=expand)
    else:
        result = classifier_accuracy(model, tiny_imagenet_samples(limit, split, per_class))
    return {
        "kind": kind,
        "onnx": str(onnx_path),
        **({"embedding": embedding.model_dump()} if embedding is not None else {}),
        "split": split if task != "detection" else "coco128",
        **({"per_class": per_class} if split == "train" and task != "detection" else {}),
        "bytes": Path(onnx_path).stat().st_size,
        "precision": precision,
        **result,
        "seconds": round(time.perf_counter() - started, 1),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--onnx", type=Path, required=True, help="the ONNX file to evaluate")
    parser.add_argument("--precision", default="fp32", help="label recorded with the result (fp32, int8)")
    parser.add_argument("--limit", type=int, default=None, help="first N Tiny-ImageNet val images (default: all)")
    parser.add_argument(
        "--split",
        choices=["val", "train"],
        default="val",
        help=f"Tiny-ImageNet val, or the first {TRAIN_PER_CLASS} train images of each class (to choose without val)",
    )
    parser.add_argument(
        "--per-class", type=int, default=TRAIN_PER_CLASS, help="--split train: the first N images of each class"
    )
    parser.add_argument(
        "--expand",
        type=int,
        default=0,
        metavar="K",
        help="embedder: search with query expansion by the K nearest images, as /search does (0: none)",
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="ONNX Runtime intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here (default: stdout)")
    parser.add_argument(
        "--class-probabilities",
        type=float,
        metavar="TEMPERATURE",
        default=None,
        help="embedder from a classifier file: embed softmax(logits / TEMPERATURE) (embedder v2: 1.0)",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="embedder from a classifier file: average the class probabilities of each image and its mirror",
    )
    args = parser.parse_args(argv)
    if args.flip and args.class_probabilities is None:
        parser.error("--flip averages class probabilities: give --class-probabilities TEMPERATURE too")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    head = None
    if args.class_probabilities is not None:
        head = EmbeddingOutput(transform="softmax", temperature=args.class_probabilities, flip=args.flip)
    report = evaluate(
        args.kind,
        args.onnx,
        precision=args.precision,
        limit=args.limit,
        threads=args.threads,
        embedding=head,
        split=args.split,
        expand=args.expand,
        per_class=args.per_class,
    )
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
