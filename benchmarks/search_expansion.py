"""Query expansion and the test-time flip against gallery size: precision@10 of an embedder version's own vectors.

ADR 0015 keeps query expansion off by default because its gain depends on how many images of the query's class the
gallery holds. This measures that dependence, offline and through the serving pipeline (``training.serving``): the
version's INT8 vectors of the Tiny-ImageNet val split, each image embedded plain and with ``EmbeddingOutput.flip``;
galleries of ``n`` images of each class (chosen with a fixed seed), the other images as queries; ``n = 49``: each
image against the other 9,999 (the issue's measure, ``python -m training.evaluate embedder``). Each search as the
gallery index runs it (:func:`services.index.vectors.expand_queries`), its neighbours weighted by cosine, or by
cosine to the power ``alpha`` (alpha query expansion: distant neighbours weigh less). Writes
benchmarks/reports/search_expansion.md and .json.

    python benchmarks/search_expansion.py [--version v8] [--per-class 49 25 10 5] [--expand 0 10 20 30 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, write_report  # noqa: E402
from kernel.paths import display_path  # noqa: E402

K = 10
LEAVE_ONE_OUT = 49  # val holds 50 images a class: each one's gallery is the other 49 of its class (and 9,950 others)


def split_gallery(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A mask of ``per_class`` rows of each label (seeded): the gallery; the other rows query it."""
    rng = np.random.default_rng(seed)
    gallery = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < per_class:
            raise ValueError(f"label {label} has {len(rows)} rows, fewer than {per_class}")
        gallery[rng.choice(rows, per_class, replace=False)] = True
    return gallery


def sweep(
    vectors: np.ndarray, labels: np.ndarray, per_class: list[int], expands: list[int], alphas: list[float]
) -> list[dict[str, Any]]:
    """precision@10 for every gallery size, expansion and weighting, over one view's vectors.

    Searched as the gallery index searches (:func:`training.evaluate.neighbour_hits`, the evaluate command's own).
    """
    from training.evaluate import neighbour_hits

    rows = []
    for n in per_class:
        if n == LEAVE_ONE_OUT:
            queries, query_labels, gallery = vectors, labels, None
        else:
            mask = split_gallery(labels, n)
            queries, query_labels, gallery = vectors[~mask], labels[~mask], (vectors[mask], labels[mask])
        for expand in expands:
            for alpha in alphas if expand else [1.0]:
                hits = neighbour_hits(queries, query_labels, K, expand=expand, gallery=gallery, alpha=alpha)
                rows.append({"per_class": n, "expand": expand, "alpha": alpha, "precision_at_10": float(hits.mean())})
    return rows


def embed_views(version: str, threads: int) -> dict[str, Any]:
    """The version's INT8 class-probability vectors of val, plain and flipped, with the labels."""
    from services.models.specs.lite0 import CLASS_EMBEDDING, INT8_FILE, finetuned_dir
    from training.evaluate import embed_all, tiny_imagenet_samples
    from training.serving import build_model, serving_spec
    from training.settings import get_training_settings

    settings = get_training_settings()
    onnx = settings.artifacts_dir / finetuned_dir(version) / INT8_FILE
    samples = tiny_imagenet_samples()
    paths = [path for path, _ in samples]
    views: dict[str, Any] = {"labels": np.asarray([label for _, label in samples]), "onnx": str(onnx)}
    for view, flip in (("plain", False), ("flip", True)):
        head = CLASS_EMBEDDING.model_copy(update={"flip": flip})
        spec = serving_spec("embedder", onnx, settings.artifacts_dir, precision="int8", embedding=head)
        views[view] = embed_all(build_model(spec, onnx, threads=threads), paths)
    return views


def render(report: dict[str, Any]) -> str:
    """The Markdown report: per view and gallery size, precision@10 by expansion and weighting."""
    rows = report["rows"]
    columns = sorted({(r["expand"], r["alpha"]) for r in rows})
    head = ["view", "gallery: images per class"] + [
        "no expansion" if e == 0 else f"K={e}" + ("" if a == 1.0 else f", cos^{a:g}") for e, a in columns
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for view in ("plain", "flip"):
        for n in report["per_class"]:
            mine = [r for r in rows if (r["view"], r["per_class"]) == (view, n)]
            cells = {(r["expand"], r["alpha"]): r["precision_at_10"] for r in mine}
            label = f"{n} (each vs the other 9,999)" if n == LEAVE_ONE_OUT else str(n)
            lines.append("| " + " | ".join([view, label] + [f"{cells[c]:.4f}" for c in columns]) + " |")
    facts = "\n".join(f"- {k}: {v}" for k, v in report["machine"].items())
    return f"""# Query expansion and the test-time flip against gallery size

Made by `python benchmarks/search_expansion.py --version {report["version"]}`: embedder {report["version"]}'s INT8
vectors (`{report["onnx"]}`) of the 10,000 Tiny-ImageNet val images, through the serving pipeline, each image plain
and with `flip` (the mean of its and its mirror image's class probabilities). A gallery of n images of each class
(seeded), the other images query it; 49: each image against the other 9,999. K: query expansion as the gallery
index runs it (the query plus its K nearest gallery vectors weighted by cosine), `cos^a`: weighted by cosine to the
power a. precision@10: the share of the 10 hits of the query's class. Expansion is off by default (ADR 0015); `flip`
is off for every version.

{chr(10).join(lines)}

## Machine

{facts}
- wall time: {report["seconds"]:.0f} s
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v8", help="the Tiny-ImageNet release whose embedder is measured")
    parser.add_argument("--per-class", type=int, nargs="+", default=[LEAVE_ONE_OUT, 25, 10, 5])
    parser.add_argument("--expand", type=int, nargs="+", default=[0, 10, 20, 30, 50])
    parser.add_argument("--alpha", type=float, nargs="+", default=[1.0, 6.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "search_expansion.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    views = embed_views(args.version, args.threads)
    rows = []
    for view in ("plain", "flip"):
        for row in sweep(views[view], views["labels"], args.per_class, args.expand, args.alpha):
            rows.append({"view": view, **row})
    report = {
        "version": args.version,
        "onnx": display_path(views["onnx"]),
        "per_class": args.per_class,
        "rows": rows,
        "machine": machine_facts(),
        "seconds": time.perf_counter() - started,
    }
    write_report(args.out, render(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
