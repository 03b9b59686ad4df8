"""Drift detection on real shifts of real images -> benchmarks/reports/drift.{md,json}.

Reference: the committed profile artifacts/drift/classifier-<version>.json (2,000 images of the even-numbered half
of Tiny-ImageNet val). Two disjoint image sets besides it:

- tuning: even-numbered val images that are NOT in the reference (the design was checked on these first);
- evaluation: odd-numbered val images (held out: never in the reference, never looked at while designing).

Each set is run once per shift through the real classifier in process (INT8), its features cached; windows of
``--window`` images are then drawn from a set (without replacement inside a window; windows overlap each other)
and compared with :func:`services.drift.detect.compare` exactly as the api calls it.

Usage: nice -n 10 python benchmarks/drift.py [--windows 200] [--shifted-windows 50] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts
from benchmarks.drift_data import SHIFTS, FeatureCache, coco_photos, decoded, tiny_split, tiny_train
from benchmarks.drift_report import write_report
from services.config import ServingSettings, get_settings
from services.drift.detect import compare
from services.drift.reference import ReferenceProfile, reference_path
from services.models.specs.lite0 import SERVED
from services.models.worker import build_pool

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO / "artifacts" / "drift"
REPORTS = REPO / "benchmarks" / "reports"


def evaluate(
    reference: ReferenceProfile,
    rows: list[dict[str, Any]],
    *,
    windows: int,
    size: int,
    seed: int,
    replace: bool = False,
) -> dict[str, Any]:
    """Verdicts of ``windows`` windows of ``size`` rows drawn from ``rows``; which tests fired how often."""
    rng = np.random.default_rng(seed)
    verdicts: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    seconds: list[float] = []
    for w in range(windows):
        picked = rng.choice(len(rows), size=size, replace=replace or size > len(rows))
        started = time.perf_counter()
        report = compare(reference, [rows[int(i)] for i in picked], window=size, seed=w)
        seconds.append(time.perf_counter() - started)
        verdicts[report.verdict] += 1
        fired.update(f"{t.name}:{t.feature}" for t in report.tests if t.drift and t.p_value is not None)
    return {
        "windows": windows,
        "window_size": size,
        "distinct_images": len(rows),
        "with_replacement": bool(replace or size > len(rows)),
        "drift": verdicts["drift"] / windows,
        "no_drift": verdicts["no_drift"] / windows,
        "insufficient_data": verdicts["insufficient_data"] / windows,
        "fired": {k: v / windows for k, v in fired.most_common()},
        "check_s_median": float(np.median(seconds)),
    }


def run(args: argparse.Namespace, settings: ServingSettings) -> dict[str, Any]:
    reference = ReferenceProfile.load(reference_path(REFERENCE_DIR, "classifier", args.version))
    cache = FeatureCache(settings.data_dir / "drift-bench", lambda: build_pool("classifier", settings), args.version)
    in_reference = set(reference.extra.get("files", []))
    tune = tiny_split(settings, held_out=False, exclude=in_reference, size=args.tune_images, seed=1)
    held = tiny_split(settings, held_out=True, exclude=set(), size=args.eval_images, seed=2)
    plan: list[tuple[str, str, list[bytes], str, int]] = [
        ("tuning", "none", tune, "none", args.windows),
        *(("tuning", s, tune, s, args.shifted_windows) for s in ("darkened", "blurred", "grey")),
        ("evaluation", "none", held, "none", args.windows),
        *(("evaluation", s, held, s, args.shifted_windows) for s in ("darkened", "blurred", "grey")),
        *(
            ("sensitivity", s, held[: args.extra_images], s, args.shifted_windows)
            for s in ("darkened x0.8", "blurred r1")
        ),
        ("not a shift?", "jpeg q75", held[: args.extra_images], "jpeg q75", args.shifted_windows),
    ]
    results: list[dict[str, Any]] = []
    for split, name, images, shift, windows in plan:
        if split not in args.splits:
            continue
        started = time.perf_counter()
        rows = cache.rows(f"{split}-{shift}-{len(images)}", partial(decoded, images, settings, SHIFTS[shift]))
        features_s = time.perf_counter() - started
        size = min(args.window, len(rows))
        found = evaluate(reference, rows, windows=windows, size=size, seed=zlib.crc32(f"{split}/{name}".encode()))
        results.append({"split": split, "shift": name, "features_s": features_s, **found})
        print(json.dumps(results[-1]), flush=True)
    extra_sets = [
        ("evaluation", "COCO photos", lambda: coco_photos(settings), "none", args.shifted_windows),
        ("sensitivity", "COCO photos resized to 64x64", lambda: coco_photos(settings), "64x64", args.shifted_windows),
        (
            "not a shift?",
            "Tiny-ImageNet train (the fine-tuning data)",
            lambda: tiny_train(settings, per_class=3),
            "none",
            args.shifted_windows,
        ),
    ]
    for split, name, source, shift, windows in extra_sets:
        if split not in args.splits:
            continue
        started = time.perf_counter()
        data = source()
        rows = cache.rows(
            f"{split}-{name.split()[0]}-{name.split()[1]}-{shift}-{len(data)}",
            partial(decoded, data, settings, SHIFTS[shift]),
        )
        features_s = time.perf_counter() - started
        found = evaluate(reference, rows, windows=windows, size=args.window, seed=7, replace=len(rows) < args.window)
        results.append({"split": split, "shift": name, "features_s": features_s, **found})
        if len(rows) < args.window:  # also the one window of every distinct photo
            alone = evaluate(reference, rows, windows=1, size=len(rows), seed=8)
            results.append({"split": split, "shift": f"{name}, all {len(rows)} distinct", "features_s": 0.0, **alone})
        print(json.dumps(results[-1]), flush=True)
    return {
        "reference": {
            "model": reference.model,
            "version": reference.version,
            "n": reference.n,
            "source": reference.source,
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--version", default=SERVED)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--windows", type=int, default=200, help="unshifted windows per set")
    parser.add_argument("--shifted-windows", type=int, default=50, help="windows per shifted set")
    parser.add_argument("--tune-images", type=int, default=1500)
    parser.add_argument("--eval-images", type=int, default=2500)
    parser.add_argument("--extra-images", type=int, default=1000, help="held-out images of the sensitivity rows")
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["tuning", "evaluation", "sensitivity", "not a shift?"],
        help="which rows to run (the design was checked with --splits tuning first)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    started = time.perf_counter()
    found = run(args, settings)
    found["wall_s"] = time.perf_counter() - started
    found["machine"] = machine_facts()
    found["args"] = vars(args)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "drift.json").write_text(json.dumps(found, indent=2) + "\n")
    (REPORTS / "drift.md").write_text(write_report(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
