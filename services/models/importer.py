"""The command-line frame shared by ``bentos/<model>/import_model.py``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from kernel.logging import configure_logging
from services.config import ServingSettings, Stage, get_settings
from services.models.spec import ModelSpec
from services.models.store import import_model, sha256_file

log = logging.getLogger(__name__)

SpecBuilder = Callable[[argparse.Namespace, ServingSettings], tuple[ModelSpec, dict[str, Path]]]


def verify_checksum(path: Path, expected: str) -> None:
    """Refuse a model file whose SHA-256 is not the published one."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set CV_MODEL_MIRROR_DIR to the folder that holds it")
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"{path} has sha256 {actual}; expected {expected}")


def main(description: str, default_version: str, build: SpecBuilder, argv: list[str] | None = None) -> str:
    """Parse the common flags, build the spec and import it; returns the tag."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--version", default=default_version, help="version label of the entry")
    parser.add_argument("--stage", default=Stage.PRODUCTION.value, choices=[s.value for s in Stage])
    parser.add_argument("--force", action="store_true", help="replace an entry with other files")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    spec, files = build(args, settings)
    tag = import_model(spec, files, force=args.force)
    log.info("model store entry ready", extra={"tag": tag})
    return tag
