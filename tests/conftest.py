"""Shared fixtures: a throw-away BentoML model store holding the three real models, real photos."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports bentoml: a model store of our own, and no network.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="cv-test-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine

from services.config import ServingSettings, get_settings
from services.models.specs.lite0 import PREVIOUS, SERVED

REPO = Path(__file__).resolve().parent.parent


def _settings() -> ServingSettings:
    return get_settings()


@pytest.fixture(scope="session")
def bentoml_home() -> str:
    return os.environ["BENTOML_HOME"]


@pytest.fixture(scope="session")
def model_store(bentoml_home: str) -> list[str]:
    """Import what ``make import-models`` imports (real ONNX files) into the test store.

    classifier SERVED (services/models/specs/lite0.py) is the Tiny-ImageNet release in production; PREVIOUS, the
    release before it, and v1, the ImageNet-1k export, are kept as ``archived`` (loaded only when pinned by
    CV_DEFAULT_VERSIONS). The embedder of the same versions embeds those classifiers' class probabilities; its v1, the
    ImageNet pooled features.
    """
    import argparse
    import importlib.util

    from services.models.store import import_model

    settings = _settings()
    if not (settings.model_mirror_dir / "yolox_nano.onnx").is_file():
        pytest.skip(f"model mirror not found at {settings.model_mirror_dir} (set CV_MODEL_MIRROR_DIR)")
    tags = []
    entries = [
        ("classifier", SERVED, "production"),
        ("classifier", PREVIOUS, "archived"),
        ("classifier", "v1", "archived"),
        ("detector", "v2", "production"),
        ("embedder", SERVED, "production"),
        ("embedder", PREVIOUS, "archived"),
        ("embedder", "v1", "archived"),
    ]
    for name, version, stage in entries:
        path = REPO / "bentos" / name / "import_model.py"
        spec = importlib.util.spec_from_file_location(f"import_{name}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = argparse.Namespace(version=version, stage=stage, force=False)
        model_spec, files = module.build(args, settings)
        tags.append(import_model(model_spec, files))
    return tags


def encode(array: np.ndarray, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs shipped by scikit-image, as JPEG/PNG bytes."""
    from skimage import data

    return {
        "chelsea.jpg": encode(data.chelsea()),
        "astronaut.png": encode(data.astronaut(), "PNG"),
        "coffee.jpg": encode(data.coffee()),
        "rocket.jpg": encode(data.rocket()),
    }


@pytest.fixture(scope="session")
def coco_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out first 128 COCO val2017 images with YOLO labels, unpacked from the mirror."""
    archive = _settings().datasets_mirror_dir / "coco128" / "coco-val2017-first128.tar.gz"
    if not archive.is_file():
        pytest.skip(f"COCO mirror not found at {archive} (set CV_DATASETS_MIRROR_DIR)")
    dest = tmp_path_factory.mktemp("coco")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    found = list(dest.rglob("images/val2017"))
    assert found, "archive layout changed"
    return found[0].parent.parent


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CV_DATA_DIR (gallery store) for one test."""
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An embedded SQLite database, migrated, per test (the data plane's, the jobs' and the gateway's tables)."""
    from kernel.db import migrate
    from kernel.db.session import create_db_engine

    engine = create_db_engine(f"sqlite:///{tmp_path / 'db' / 'cv.sqlite3'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
