"""Import the embedder into the BentoML model store.

- ``v8`` (default, stage production): the class probabilities of classifier v8 (200-d, L2-normalised), from the
  classifier's own files in ``artifacts/lite0_tiny_imagenet200_v8``; promoted over ``v6`` by the release gate.
- ``v6`` (archived by ``make import-models``, for a rollback): the class probabilities of classifier v6, from
  ``artifacts/lite0_tiny_imagenet200_v6``; ``v4`` and ``v2``, classifier v4's and v2's, from their folders.
- ``v3``, ``v5``, ``v7`` (release candidates, never promoted; ingredients of the soups): classifier v3's, v5's and
  v7's, from
  ``artifacts/candidates/``.
- ``v1``: EfficientNet-Lite0 ImageNet-1k pooled features (1280-d), from ``artifacts/efficientnet_lite0_imagenet1k``.

The specs are built by :mod:`services.models.specs.lite0`.

Usage: python bentos/embedder/import_model.py [--version v8] [--stage production] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main
from services.models.spec import ModelSpec
from services.models.specs.lite0 import SERVED, class_embedder_spec, lite0_spec

IMAGENET_VERSION = "v1"


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    stage = Stage(args.stage)
    if args.version == IMAGENET_VERSION:
        return lite0_spec(settings.artifacts_dir, name="embedder", task="embedding", version=args.version, stage=stage)
    return class_embedder_spec(settings.artifacts_dir, version=args.version, stage=stage)


if __name__ == "__main__":
    main(__doc__ or "", SERVED, build)
