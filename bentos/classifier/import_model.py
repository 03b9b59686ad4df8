"""Import the classifier (EfficientNet-Lite0, ImageNet-1k) into the BentoML model store.

Usage: python bentos/classifier/import_model.py [--version v1] [--stage production] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bentos.lite0_common import lite0_spec
from services.config import ServingSettings
from services.models.importer import main
from services.models.spec import ModelSpec


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    return lite0_spec(args, settings, name="classifier", task="classification", output_name="logits")


if __name__ == "__main__":
    main(__doc__ or "", "v1", build)
