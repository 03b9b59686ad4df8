"""Drift command line.

Usage:
    python -m services.drift reference MODEL --version V [--limit N] [--seed S] [--out DIR] [--folder DIR]

``reference`` runs ``MODEL`` ``V`` from the model store in this process (INT8 first, as served) over the reference
pool of Tiny-ImageNet val (services/drift/build.py), or over the images of ``--folder``, and writes
``<out>/<MODEL>-<V>.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kernel.logging import configure_logging
from kernel.paths import REPO_ROOT
from services.config import get_settings
from services.drift.build import folder_reference, tiny_imagenet_reference
from services.drift.reference import reference_path

log = logging.getLogger("services.drift")  # also when run as __main__
DEFAULT_OUT = REPO_ROOT / "artifacts" / "drift"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.drift", description="Drift detection tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    reference = commands.add_parser("reference", help="build a model version's reference profile")
    reference.add_argument("model", help="the model's name in the store, e.g. classifier")
    reference.add_argument("--version", required=True, help="the version to profile, e.g. v2")
    reference.add_argument("--limit", type=int, default=2000, help="images in the profile (default 2000)")
    reference.add_argument(
        "--folder", type=Path, help="images to profile instead of the Tiny-ImageNet reference pool (the detector: COCO)"
    )
    reference.add_argument("--seed", type=int, default=0, help="seed of the sample of the reference pool")
    reference.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"folder of the profiles (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if args.folder is not None:
        profile = folder_reference(
            args.model, args.version, args.folder, limit=args.limit, seed=args.seed, settings=settings
        )
    else:
        profile = tiny_imagenet_reference(args.model, args.version, limit=args.limit, seed=args.seed, settings=settings)
    path = reference_path(args.out, args.model, args.version)
    profile.save(path)
    log.info("reference written", extra={"path": str(path), "images": profile.n, "bytes": path.stat().st_size})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
