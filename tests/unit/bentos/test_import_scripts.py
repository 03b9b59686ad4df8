"""The bentos/ folders: each BentoML service is the catalogue's, each import script builds its model's spec."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from services.config import ServingSettings, Stage
from services.models.catalogue import CATALOGUE, CatalogueEntry
from services.models.specs.lite0 import PREVIOUS, SERVED

REPO = Path(__file__).resolve().parents[3]


def _script(name: str) -> ModuleType:
    """``bentos/<name>/import_model.py``, loaded as the Makefile runs it: a file, not a package module."""
    spec = importlib.util.spec_from_file_location(f"import_{name}", REPO / "bentos" / name / "import_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.name)
def test_each_bentofile_serves_the_catalogue_service(entry: CatalogueEntry) -> None:
    bentofile = yaml.safe_load((REPO / "bentos" / entry.name / "bentofile.yaml").read_text())
    assert bentofile["service"] == entry.service
    assert getattr(importlib.import_module(entry.service_module), entry.service_class).name == entry.name


@pytest.mark.parametrize(
    ("name", "version", "stage", "files"),
    [
        (name, version, stage, {"fp32": "model.onnx", "int8": "model.int8.onnx"})
        for name in ("classifier", "embedder")
        for version, stage in (
            (SERVED, "production"),
            (PREVIOUS, "archived"),
            ("v2", "archived"),
            ("v1", "archived"),
            # Release candidates (artifacts/candidates/), ingredients of the soups, importable for the release gate.
            ("v3", "shadow"),
            ("v5", "shadow"),
        )
    ],
)
def test_the_lite0_imports_build_their_specs_from_the_committed_artifacts(
    name: str, version: str, stage: str, files: dict[str, str]
) -> None:
    settings = ServingSettings(_env_file=None, artifacts_dir=REPO / "artifacts")  # type: ignore[call-arg]
    spec, paths = _script(name).build(argparse.Namespace(version=version, stage=stage, force=False), settings)
    assert (spec.name, spec.version, spec.stage) == (name, version, Stage(stage))
    assert spec.files == files and {p: path.name for p, path in paths.items()} == files
    assert spec.task == next(e.task for e in CATALOGUE if e.name == name)


@pytest.mark.parametrize("version", sorted({"v2", PREVIOUS, SERVED}))
def test_a_class_embedder_embeds_its_classifiers_probabilities_and_carries_its_measured_precision(version: str) -> None:
    settings = ServingSettings(_env_file=None, artifacts_dir=REPO / "artifacts")  # type: ignore[call-arg]
    args = argparse.Namespace(version=version, stage="production", force=False)
    spec, paths = _script("embedder").build(args, settings)
    classifier, classifier_paths = _script("classifier").build(args, settings)
    assert paths == classifier_paths  # the classifier release's own files, no copy
    assert spec.output_name == "logits" and spec.embedding is not None and spec.embedding.transform == "softmax"
    assert spec.labels == [] and spec.extra["dim"] == len(classifier.labels) == 200
    assert spec.metrics["tiny_imagenet_val_int8"]["precision_at_10"] > 0.7


def test_a_version_that_was_never_released_is_refused_by_name() -> None:
    settings = ServingSettings(_env_file=None, artifacts_dir=REPO / "artifacts")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="no Tiny-ImageNet release is named 'v9'"):
        _script("classifier").build(argparse.Namespace(version="v9", stage="shadow", force=False), settings)
