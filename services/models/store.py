"""Read and write model versions in the BentoML model store.

An entry ``<name>:<version>`` holds the ONNX file(s) and a ``spec`` in its metadata
(:class:`ModelSpec`). ``bentos/<model>/import_model.py`` writes entries with
:func:`import_model`; the services read them with :func:`list_versions`; the release gate
(``python -m training.validate``) moves a version between stages with :func:`set_stage`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound as BentoNotFound

from kernel.paths import sha256_file
from services.config import Stage
from services.models.spec import LoadedFiles, ModelSpec

log = logging.getLogger(__name__)


def list_versions(name: str) -> list[LoadedFiles]:
    """Every stored version of ``name`` with a valid spec, oldest first."""
    try:
        entries = bentoml.models.list(name)
    except BentoNotFound:
        return []
    found: list[LoadedFiles] = []
    for entry in sorted(entries, key=lambda m: m.info.creation_time):
        raw = entry.info.metadata.get("spec")
        if not isinstance(raw, dict):
            log.warning("model entry has no spec; skipped", extra={"tag": str(entry.tag)})
            continue
        spec = ModelSpec.model_validate(raw)
        paths = {precision: Path(entry.path_of(file)) for precision, file in spec.files.items()}
        found.append(LoadedFiles(spec=spec, paths=paths))
    return found


def import_model(spec: ModelSpec, files: dict[str, Path], *, force: bool = False) -> str:
    """Create the entry ``spec.name:spec.version`` holding ``files`` (precision -> path).

    Idempotent: an entry whose file checksums match keeps its files and its stage (a release may have moved it);
    the rest of its spec is rewritten where the code's spec has changed (e.g. a new serving setting of the version).
    A different entry under the same tag is an error unless ``force`` is set.

    Returns:
        The tag of the entry.
    """
    sums = {precision: sha256_file(path) for precision, path in files.items()}
    spec = spec.model_copy(update={"sha256": sums, "files": {p: f.name for p, f in files.items()}})
    try:
        existing = bentoml.models.get(spec.tag)
    except BentoNotFound:
        existing = None
    if existing is not None:
        stored = existing.info.metadata.get("spec")
        if isinstance(stored, dict) and stored.get("sha256") == sums and not force:
            _refresh_spec(existing, spec.model_copy(update={"stage": ModelSpec.model_validate(stored).stage}))
            return spec.tag
        if not force:
            raise FileExistsError(f"{spec.tag} exists with other files; pass force=True to replace it")
        bentoml.models.delete(spec.tag)
    with bentoml.models.create(
        spec.tag,
        labels={"task": spec.task, "stage": spec.stage.value, "arch": spec.arch},
        metadata={"spec": spec.model_dump(mode="json", exclude_none=True)},
    ) as entry:
        for path in files.values():
            shutil.copyfile(path, entry.path_of(path.name))
    log.info("model imported", extra={"tag": spec.tag, "files": sorted(spec.files.values())})
    return spec.tag


def _refresh_spec(entry: Any, spec: ModelSpec) -> None:
    """Write ``spec`` into the stored entry's metadata (as :func:`set_stage` does) unless it is already there."""
    dumped = spec.model_dump(mode="json", exclude_none=True)
    if entry.info.metadata.get("spec") == dumped:
        log.info("model already in the store", extra={"tag": spec.tag})
        return
    entry.info.metadata["spec"] = dumped
    entry.info.labels.update({"task": spec.task, "arch": spec.arch})
    entry.flush()
    log.info("model spec updated in the store", extra={"tag": spec.tag})


def set_stage(name: str, version: str, stage: Stage) -> ModelSpec:
    """Move the entry ``name:version`` to ``stage``: its spec's ``stage`` and its ``stage`` label.

    BentoML keeps an entry's labels and metadata in ``model.yaml`` inside the entry's folder; both are
    rewritten there (``Model.flush``), the files and the creation time are left as they are. Running
    services read stages when they load their models, so a change takes effect at their next start.

    Returns:
        The entry's spec with its new stage.

    Raises:
        bentoml.exceptions.NotFound: there is no such entry.
        ValueError: the entry has no spec.
    """
    entry = bentoml.models.get(f"{name}:{version}")
    raw = entry.info.metadata.get("spec")
    if not isinstance(raw, dict):
        raise ValueError(f"{name}:{version} has no spec in its metadata")
    spec = ModelSpec.model_validate(raw).model_copy(update={"stage": stage})
    # ModelInfo is a frozen attrs class around plain dicts: the dicts are updated in place, then written.
    entry.info.metadata["spec"] = spec.model_dump(mode="json", exclude_none=True)
    entry.info.labels["stage"] = stage.value
    entry.flush()
    log.info("model stage changed", extra={"tag": spec.tag, "stage": stage.value})
    return spec
