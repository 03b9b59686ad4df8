"""Fakes for the unit tests: model specs and store entries built in the test, image bytes, metric samples."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from prometheus_client import REGISTRY

from services.config import Stage
from services.models.spec import InputSpec, LoadedFiles, ModelSpec


def image_bytes(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    """Encode a Pillow image in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def tar_archive(path: Path, members: dict[str, bytes]) -> None:
    """A .tar.gz at ``path`` (folders made) holding ``members`` (name -> bytes), like the data sets' archives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def make_spec(
    *,
    name: str = "m",
    version: str = "v1",
    task: str = "classification",
    arch: str = "efficientnet_lite0",
    stage: Stage = Stage.PRODUCTION,
    files: dict[str, str] | None = None,
    labels: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    input_spec: InputSpec | None = None,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        version=version,
        task=task,  # type: ignore[arg-type]
        arch=arch,
        stage=stage,
        input=input_spec or InputSpec(height=8, width=8),
        output_name="out",
        labels=labels if labels is not None else [],
        files=files or {"fp32": "model.onnx"},
        extra=extra or {},
    )


def make_entry(**kwargs: Any) -> LoadedFiles:
    """A store entry whose paths are ``/fake/<version>/<precision>.onnx`` (never opened)."""
    spec = make_spec(**kwargs)
    return LoadedFiles(spec=spec, paths={p: Path(f"/fake/{spec.version}/{p}.onnx") for p in spec.files})


def sample(name: str, labels: dict[str, str]) -> float:
    """Current value of a Prometheus sample in the default registry (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeRunner:
    """Stands in for an ONNX Runtime session: records each batch and answers from a fixed row.

    Args:
        row: The output row returned for every image (repeated along the batch axis).
        fn: Computes the whole output from the batch instead of ``row``.
        error: Raised on every call.
        fail_when: Raise when this predicate holds for the batch (a "poison" input).
    """

    def __init__(
        self,
        row: Sequence[float] | np.ndarray | None = None,
        *,
        fn: Callable[[np.ndarray], np.ndarray] | None = None,
        error: Exception | None = None,
        fail_when: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.row = np.asarray(row if row is not None else [0.0, 0.0, 0.0], dtype=np.float32)
        self.fn = fn
        self.error = error
        self.fail_when = fail_when
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        if self.error is not None:
            raise self.error
        if self.fail_when is not None and self.fail_when(batch):
            raise RuntimeError("poison input")
        if self.fn is not None:
            return self.fn(batch)
        return np.repeat(self.row[None], len(batch), axis=0)


class FakeFactory:
    """A ``RunnerFactory``: ``(version, precision)`` -> a runner, or an exception raised at load time."""

    def __init__(self, runners: dict[tuple[str, str], FakeRunner | Exception] | None = None) -> None:
        self.runners = runners or {}
        self.loaded: list[tuple[str, str]] = []

    def __call__(self, path: Path, spec: ModelSpec) -> FakeRunner:
        key = (spec.version, path.stem)
        self.loaded.append(key)
        found = self.runners.get(key)
        if isinstance(found, Exception):
            raise found
        if found is None:
            found = self.runners[key] = FakeRunner()
        return found
