"""Import the classifier into the BentoML model store.

- ``v8`` (default, stage production): the weight average of ``v2``, ``v3``, ``v5`` and ``v7`` (``python -m
  training.soup``, then ``python -m training.release``), FP32 and INT8, from ``artifacts/lite0_tiny_imagenet200_v8``;
  promoted over ``v6`` by the release gate (``make release MODEL=classifier CANDIDATE=v8``).
- ``v6`` (``make import-models`` keeps it ``archived``, for a rollback): the weight average of ``v2``, ``v3`` and
  ``v5``, from ``artifacts/lite0_tiny_imagenet200_v6``; ``v4``, of ``v2`` and ``v3``, from
  ``artifacts/lite0_tiny_imagenet200_v4``.
- ``v2``: EfficientNet-Lite0 fine-tuned on Tiny-ImageNet-200 (200 classes), from ``artifacts/lite0_tiny_imagenet200``
  (``make train`` then ``make release``).
- ``v3``, ``v5``, ``v7`` (release candidates, never promoted; not imported by ``make import-models``): the same
  network fine-tuned one stage deeper (``training/configs/lite0_tiny_imagenet_v3.yaml``), with v2's recipe and another
  seed (``lite0_tiny_imagenet_v5.yaml``) and with v3's and another seed (``lite0_tiny_imagenet_v7.yaml``), from
  ``artifacts/candidates/``.
- ``v1``: the ImageNet-1k export (1000 classes) from ``artifacts/efficientnet_lite0_imagenet1k``.

The specs are built by :mod:`services.models.specs.lite0`.

Usage: python bentos/classifier/import_model.py [--version v8] [--stage production] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main
from services.models.spec import ModelSpec
from services.models.specs.lite0 import SERVED, finetuned_spec, lite0_spec

IMAGENET_VERSION = "v1"


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    stage = Stage(args.stage)
    if args.version == IMAGENET_VERSION:
        return lite0_spec(
            settings.artifacts_dir, name="classifier", task="classification", version=args.version, stage=stage
        )
    return finetuned_spec(settings.artifacts_dir, version=args.version, stage=stage)


if __name__ == "__main__":
    main(__doc__ or "", SERVED, build)
