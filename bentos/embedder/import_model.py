"""Import the embedder (EfficientNet-Lite0 pooled 1280-d features, L2-normalised) into the BentoML model store.

The spec is built by :mod:`services.models.specs.lite0` over ``artifacts/efficientnet_lite0_imagenet1k``.

Usage: python bentos/embedder/import_model.py [--version v1] [--stage production] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main
from services.models.spec import ModelSpec
from services.models.specs.lite0 import lite0_spec


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    return lite0_spec(
        settings.artifacts_dir, name="embedder", task="embedding", version=args.version, stage=Stage(args.stage)
    )


if __name__ == "__main__":
    main(__doc__ or "", "v1", build)
