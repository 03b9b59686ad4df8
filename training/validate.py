"""The release gate: a candidate version against production, on the same held-out data, in one process.

Usage::

    python -m training.validate classifier --candidate v3 [--against production] [--limit 2000] [--dry-run]

Both versions come from the BentoML model store and run in process on ONNX Runtime, every precision they hold
(FP32, INT8), through the serving pipeline. Measured: the task metric (top-1/top-5 on Tiny-ImageNet-200 val,
mAP@0.5:0.95 on the 128 held-out COCO val2017 images, precision@10 for the embedder), expected calibration
error (15 bins), the ten worst classes, batch-1 latency p50/p95 (the files' calls interleaved), the INT8 loss
and ONNX-vs-PyTorch parity where a PyTorch source exists. The thresholds live in
``training/configs/gate/release_gate.yaml``. The report (Markdown and JSON) goes to
``artifacts/<the model's folder>/release/<model>-<candidate>.md``. When every check passes the candidate becomes
``production`` in the store and the previous production version ``archived`` (not with ``--dry-run``);
otherwise nothing changes and the exit status is 1, with each failed check, what it measured and what it allows.
Exit status 2: the command cannot run (unknown model or version, no production version).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernel.paths import display_path
from services.config import Stage
from services.models.catalogue import MODEL_NAMES, entry
from services.models.contract import Model
from services.models.spec import LoadedFiles
from services.models.store import list_versions, set_stage
from training.gate.checks import decide, failed
from training.gate.config import DEFAULT_CONFIG, GateConfigError, ModelGate, Thresholds, load_gate_config
from training.gate.evaluation import HeldOut, evaluate_file, held_out
from training.gate.extensions import extensions_for
from training.gate.probes import interleaved_latency, parity
from training.gate.report import GateRun, SectionBuilder, write
from training.gate.results import VersionResult
from training.provenance import git_commit
from training.serving import build_model
from training.settings import get_training_settings

log = logging.getLogger("training.validate")
LATENCY_IMAGES = 16


class GateError(Exception):
    """The gate cannot run: a version is missing or the comparison makes no sense."""


def pick_versions(name: str, candidate: str, against: str) -> tuple[LoadedFiles, LoadedFiles]:
    """The candidate entry and the one it is compared with: a version label, or the newest one at a stage.

    Raises:
        GateError: either is missing, or they are the same version.
    """
    entries = list_versions(name)
    by_version = {e.spec.version: e for e in entries}
    if candidate not in by_version:
        raise GateError(f"{name}:{candidate} is not in the model store (versions: {', '.join(by_version) or 'none'})")
    if against in {s.value for s in Stage}:
        staged = [e for e in entries if e.spec.stage == against and e.spec.version != candidate]
        if not staged:
            raise GateError(f"no other {name} version is at stage {against!r} to compare {candidate} with")
        baseline = staged[-1]  # the newest
    elif against in by_version:
        baseline = by_version[against]
    else:
        raise GateError(f"--against {against!r} is neither a stage nor a stored version of {name}")
    if baseline.spec.version == candidate:
        raise GateError(f"{name}:{candidate} cannot be compared with itself")
    return by_version[candidate], baseline


def load_files(entry_files: LoadedFiles, threads: int) -> dict[str, Model[Any]]:
    """Every precision of an entry as the serving model class over ONNX Runtime (CPU)."""
    return {
        precision: build_model(entry_files.spec, path, precision=precision, threads=threads)
        for precision, path in sorted(entry_files.paths.items())
    }


def measure(
    versions: dict[str, LoadedFiles], data: HeldOut, gate: ModelGate, torch_state: Path | None
) -> dict[str, VersionResult]:
    """Evaluate every file of every version on ``data``, then time them all together and check parity.

    Args:
        versions: ``candidate`` and ``production`` entries.
        data: The held-out images.
        gate: Threads and latency settings.
        torch_state: The candidate's PyTorch state dict, where it is a fine-tune (see :func:`probes.torch_source`).
    """
    models = {role: load_files(files, gate.threads) for role, files in versions.items()}
    results: dict[str, VersionResult] = {}
    for role, files in versions.items():
        log.info("evaluating %s (%s) on %d images", files.spec.tag, role, len(data.paths))
        results[role] = VersionResult(
            name=files.spec.name,
            version=files.spec.version,
            stage=files.spec.stage.value,
            precisions={p: evaluate_file(m, data) for p, m in models[role].items()},
            files=dict(files.spec.sha256),
            source=files.spec.source,
        )
    flat = {f"{role}/{p}": m for role, by_precision in models.items() for p, m in by_precision.items()}
    any_model = next(iter(flat.values()))
    timed = interleaved_latency(
        flat,
        data.pixels()[:LATENCY_IMAGES],
        any_model.params_type(),
        iterations=gate.latency_iterations,
        warmup=gate.latency_warmup,
    )
    for key, stats in timed.items():
        role, precision = key.split("/")
        results[role].latency_ms[precision] = stats
    for role, files in versions.items():
        if "fp32" in models[role]:
            state = torch_state if role == "candidate" else None
            results[role].parity = parity(models[role]["fp32"], files.spec, data.pixels(), state)
    return results


def promote(name: str, candidate: str) -> list[str]:
    """Make ``candidate`` the production version and archive the versions that were; returns what changed."""
    changes = []
    for stored in list_versions(name):
        if stored.spec.stage == Stage.PRODUCTION and stored.spec.version != candidate:
            set_stage(name, stored.spec.version, Stage.ARCHIVED)
            changes.append(f"{stored.spec.tag}: production -> archived")
    set_stage(name, candidate, Stage.PRODUCTION)
    changes.insert(0, f"{name}:{candidate}: -> production")
    return changes


def override_thresholds(gate: ModelGate, items: Sequence[str]) -> tuple[ModelGate, list[str]]:
    """``gate`` with ``NAME=VALUE`` thresholds replaced, and what changed (``"p95_slowdown_percent 10.0 -> 100.0"``).

    Raises:
        GateConfigError: an item is not ``NAME=VALUE`` of a threshold, or the value is not allowed for it.
    """
    update: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in Thresholds.model_fields:
            raise GateConfigError(
                f"--threshold {item!r}: expected NAME=VALUE, NAME one of {sorted(Thresholds.model_fields)}"
            )
        update[name] = value
    if not update:
        return gate, []
    try:
        changed = ModelGate.model_validate(gate.model_dump() | update)
    except ValueError as exc:
        raise GateConfigError(f"--threshold: {exc}") from exc
    return changed, [f"{name} {getattr(gate, name)} -> {getattr(changed, name)}" for name in update]


def run_gate(
    args: argparse.Namespace, argv: Sequence[str], extensions: Sequence[SectionBuilder] | None = None
) -> GateRun:
    """Measure, decide, promote (unless refused or a dry run) and write the report."""
    if extensions is None:
        extensions = extensions_for(args.inference_log)
    gate = load_gate_config(args.model, args.config)
    if args.threads is not None:
        gate = gate.model_copy(update={"threads": args.threads})
    gate, overridden = override_thresholds(gate, args.threshold)
    settings = get_training_settings()
    candidate, production = pick_versions(args.model, args.candidate, args.against)
    started = time.perf_counter()
    data = held_out(entry(args.model).task, settings, limit=args.limit, seed=gate.seed)
    torch_state = args.torch_state or gate.torch_state
    results = measure({"candidate": candidate, "production": production}, data, gate, torch_state)
    checks = decide(results["candidate"], results["production"], gate.metric, gate)
    decision = "refused" if failed(checks) else ("passed (dry run)" if args.dry_run else "promoted")
    facts: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "command": "python -m training.validate " + " ".join(argv),
        "thresholds": display_path(args.config)
        + (f"; for this release {', '.join(overridden)}, because: {args.because}" if overridden else ""),
        "held-out data": f"{'Tiny-ImageNet-200 val' if data.task != 'detection' else 'COCO val2017 (128 held out)'}"
        + (f", seeded subset (limit {args.limit}, seed {gate.seed})" if args.limit else ", all of it"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if decision == "promoted":
        facts["stage changes"] = "; ".join(promote(args.model, args.candidate))
    folder = args.report_dir or gate.report_dir(settings.artifacts_dir)
    run = GateRun(gate, results["candidate"], results["production"], data, checks, decision, facts, folder)
    facts["report"] = display_path(write(run, folder, extensions))
    return run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("--candidate", required=True, help="the version to release")
    parser.add_argument("--against", default=Stage.PRODUCTION.value, help="a stage (its newest version) or a version")
    parser.add_argument("--limit", type=int, default=None, help="a seeded subset of N held-out images (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="measure and report, never change a stage")
    parser.add_argument("--report-dir", type=Path, default=None, help="default: artifacts/<model folder>/release")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the thresholds file")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: config)")
    parser.add_argument("--torch-state", type=Path, default=None, help="the candidate's PyTorch state dict")
    parser.add_argument(
        "--inference-log", default=None, help="a database URL: report the candidate's shadow agreement from its log"
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="replace one of the thresholds file's values for this release (repeat); needs --because",
    )
    parser.add_argument("--because", default=None, help="why --threshold: recorded in the report")
    args = parser.parse_args(argv)
    if args.threshold and not (args.because or "").strip():
        parser.error("--threshold changes what the gate allows: say why with --because")
    if args.limit is not None and args.limit < 11:
        parser.error("--limit must be at least 11 (precision@10 needs more than 10 images)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run = run_gate(args, argv)
    except (GateError, GateConfigError) as exc:
        sys.stderr.write(f"release gate: {exc}\n")
        return 2
    for check in run.checks:
        sys.stdout.write(check.describe() + "\n")
    sys.stdout.write(f"{run.candidate.tag}: {run.decision.upper()}; report: {run.facts['report']}\n")
    return 0 if run.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
