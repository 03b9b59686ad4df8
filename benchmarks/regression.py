"""Performance regression check: the working tree against a baseline git ref, measured in one run, interleaved.

``python -m benchmarks.regression --baseline REF`` checks REF out in a temporary worktree, imports each side's
models with each side's own import scripts into each side's own BentoML home, then measures both sides
alternately: bare model latency per model and precision (one process per side running that side's code, short
blocks alternating between the two),
served latency at concurrency 1 and throughput at 16 (both sides' `bentoml serve` up at once, rounds A B / B A),
and accuracy on a fixed sample through each side's routes. It compares the ratios against
benchmarks/regression.yaml, writes benchmarks/reports/regression.md (+ .json) and exits 1 when a metric is past
its limit (each one named), 0 otherwise. Both sides run on this interpreter: dependency changes are not isolated.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/regression.py` must find services/ and tests/

from benchmarks.common import stats, write_report  # noqa: E402
from benchmarks.regression_compare import CONFIG, Check, compare, failures, load_limits, render  # noqa: E402
from benchmarks.regression_sides import (  # noqa: E402
    MODELS,
    RegressionError,
    Side,
    bare_blocks,
    baseline_worktree,
    git,
    import_models,
    share_mirrors,
)

log = logging.getLogger("benchmarks.regression")
PARTS = ("bare", "served", "accuracy")
# Sizes: (default, --quick). The default is a moderate run (about 10 minutes on 2 busy cores).
SIZES = {
    "rounds": (6, 2),
    "bare_blocks": (12, 2),
    "bare_calls": (10, 4),
    "bare_warmup": (5, 2),
    "sequential": (20, 6),
    "requests": (64, 32),
    "warmup": (16, 4),
    "classify_images": (500, 40),
    "coco_images": (128, 8),
}


def _median(values: list[float]) -> float:
    finite = [v for v in values if v == v]  # NaN != NaN
    return statistics.median(finite) if len(finite) == len(values) and finite else float("nan")


def flatten(raw: dict[str, Any]) -> dict[str, float]:
    """One side's raw results -> the compared metrics.

    Bare: p50 of all the side's samples. Served: medians over rounds of each round's p50, throughput over all rounds.
    """
    metrics: dict[str, float] = {}
    for key, summary in raw.get("bare", {}).items():  # model/precision -> stats of the pooled samples
        metrics[f"bare/{key}/p50_ms"] = summary["p50"]
    for route, by_concurrency in raw.get("served", {}).items():
        for c, rounds in by_concurrency.items():
            clean = all(r["ok"] == sum(r["statuses"].values()) for r in rounds)  # a failed request voids the metric
            key = f"served/{route}/c{c}"
            if c == "1":
                metrics[f"{key}/p50_ms"] = _median([r["p50"] for r in rounds]) if clean else float("nan")
            else:
                seconds = sum(r["seconds"] for r in rounds)
                metrics[f"{key}/throughput"] = sum(r["ok"] for r in rounds) / seconds if clean else float("nan")
            metrics[f"{key}/cpu_ms_per_request"] = _median([r["cpu_ms_per_request"] for r in rounds])
    if accuracy := raw.get("accuracy"):
        metrics["accuracy/classifier/top1"] = accuracy["classifier_top1"]
        metrics["accuracy/detector/map50_95"] = accuracy["detector_map50_95"]
    return metrics


def describe_tree() -> str:
    dirty = git(REPO, "status", "--porcelain", "--untracked-files=no")
    return git(REPO, "rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def measure_sides(args: argparse.Namespace, sides: list[Side], workdir: Path) -> dict[str, dict[str, Any]]:
    """Import, then the bare blocks, then the served rounds and the accuracy sample: each side's raw results."""
    serves = bool({"served", "accuracy"} & set(args.parts))
    for side in sides:
        import_models(side, list(MODELS) if serves else args.models, args.build_cache)
    raw: dict[str, dict[str, Any]] = {side.name: {} for side in sides}
    if "bare" in args.parts:
        for name, by_key in bare_blocks(sides, args.models, args, workdir).items():
            raw[name]["bare"] = {key: {**stats(ms), "samples": ms} for key, ms in by_key.items()}
    if serves:
        served(args, sides, workdir, raw)
    return raw


def served(args: argparse.Namespace, sides: list[Side], workdir: Path, raw: dict[str, dict[str, Any]]) -> None:
    from benchmarks.common import photos
    from benchmarks.regression_served import accuracy, classifier_sample, coco_sample, load_rounds, serving
    from services.config import ServingSettings

    mirror = ServingSettings().datasets_mirror_dir
    ports: list[int | None] = [args.port_base + i if args.port_base else None for i in range(len(sides))]
    with serving(sides, workdir, ports) as servers:
        if "served" in args.parts:
            for name, routes in load_rounds(servers, photos(), args).items():
                raw[name]["served"] = routes
        if "accuracy" in args.parts:
            classify = classifier_sample(mirror, args.classify_images)
            coco = coco_sample(mirror, workdir, args.coco_images)
            for side in sides:
                log.info("accuracy sample: %s", side.name)
                raw[side.name]["accuracy"] = accuracy(servers[side.name], classify, coco)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Check]]:
    """The whole check: the report (JSON-ready) and the compared metrics."""
    from benchmarks.common import machine_facts

    limits = load_limits(args.config)  # a bad limits file fails before the long run
    shared_cache = share_mirrors()
    if args.build_cache is None and not args.isolated_builds:
        args.build_cache = shared_cache
    started, tree = time.monotonic(), describe_tree()
    with tempfile.TemporaryDirectory(prefix="cv-regression-") as tmp, baseline_worktree(REPO, args.baseline) as wt:
        root, commit = wt
        work = Path(tmp)
        sides = [Side(n, r, work / n / "bentoml", work / n / "data") for n, r in (("baseline", root), ("tree", REPO))]
        raw = measure_sides(args, sides, work)
    metrics = {name: flatten(side) for name, side in raw.items()}
    checks = compare(metrics["baseline"], metrics["tree"], limits)
    machine = machine_facts() | {"wall time": f"{time.monotonic() - started:.0f} s", "load average": os.getloadavg()}
    plan = {k: str(v) for k, v in vars(args).items() if k not in {"out", "config"}}
    report: dict[str, Any] = {"baseline": f"{args.baseline} ({commit[:10]})", "tree": tree, "plan": plan}
    report |= {"machine": machine, "metrics": metrics, "raw": raw, "checks": [asdict(c) for c in checks]}
    return report, checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--baseline", default="HEAD~1", help="git ref to compare against (default: HEAD~1, the previous commit)")
    add("--config", type=Path, default=CONFIG, help="limits (default: benchmarks/regression.yaml)")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "regression.md", help="report (.json beside)")
    add("--quick", action="store_true", help="a smoke run: 2 rounds of a few calls and requests, small samples")
    add("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    add("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models of the bare rounds")
    add("--rounds", type=int, help="interleaved served rounds per side")
    add("--bare-blocks", type=int, help="bare-model blocks per side (sides alternate block by block)")
    add("--bare-calls", type=int, help="timed calls per model and precision per block")
    add("--bare-warmup", type=int, help="untimed calls first")
    add("--sequential", type=int, help="requests per route per round at concurrency 1")
    add("--requests", type=int, help="requests per route per round at concurrency 16")
    add("--warmup", type=int, help="warm-up requests per route and concurrency per server")
    add("--classify-images", type=int, help="seeded Tiny-ImageNet val sample for the classifier's top-1")
    add("--coco-images", type=int, help="first held-out COCO val2017 images for the detector's mAP")
    add("--port-base", type=int, default=0, help="serve the sides on this port and the next (default: free ports)")
    add("--build-cache", type=Path, help="detector build cache both sides share (default: CV_DATA_DIR's)")
    add("--isolated-builds", action="store_true", help="each side builds its detector files itself")
    args = parser.parse_args(argv)
    for name, (default, quick) in SIZES.items():  # a size given on the command line wins over both
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    if min(getattr(args, name) for name in SIZES if name != "bare_warmup") < 1 or args.bare_warmup < 0:
        parser.error("rounds, calls, requests and sample sizes must be >= 1 (bare warm-up >= 0)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "services", "faiss"):  # a line per request / batch / CPU feature otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    try:
        report, checks = run(args)
    except RegressionError as exc:
        log.error("%s", exc)
        return 2
    write_report(args.out, render(report, checks), report)
    failed = failures(checks)
    for c in failed:
        log.error("regression: %s", c.message)
    print("PASS" if not failed else f"FAIL: {len(failed)} metric(s) past their limits")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
