"""Where other parts of the system hook into the release gate's run.

Each extension is a :data:`training.gate.report.SectionBuilder`: it receives the finished
:class:`training.gate.report.GateRun` (both versions' results, with their per-sample outputs in
``PrecisionResult.outputs``, and the held-out data in ``run.data``) and returns a report section or None.

- :func:`drift_reference` (always): the candidate's drift reference profile (services/drift), built from the
  held-out images the gate measured it on, written where the api's drift check reads references
  (``CV_DRIFT_REFERENCE_DIR``, default ``artifacts/drift/<model>-<version>.json``) when the candidate is promoted.
- :func:`shadow_section` (with ``--inference-log URL``): how the candidate agreed with production while it ran in
  stage ``shadow`` (services/shadow/report.py), read from that inference-log database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from training.gate.report import GateRun, ReportSection, SectionBuilder
from training.settings import get_training_settings

log = logging.getLogger(__name__)
REFERENCE_IMAGES = 2000  # at most, as the committed references (services/drift/build.py)


def _images(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths[:REFERENCE_IMAGES]:
        with Image.open(path) as image:
            yield np.asarray(image.convert("RGB"))


def drift_reference(run: GateRun) -> ReportSection | None:
    """Build and save a promoted candidate's drift reference from the gate's held-out images.

    Only on promotion: a dry run or a refusal leaves the references the api reads as they are.
    """
    if run.decision != "promoted":
        return None
    from services.drift.build import build_reference_for
    from services.drift.reference import reference_path

    name, version = run.gate.name, run.candidate.version
    source = f"release gate held-out images ({len(run.data.paths[:REFERENCE_IMAGES])} of {len(run.data.paths)})"
    profile = build_reference_for(name, version, _images(run.data.paths), source=source)
    path = reference_path(get_training_settings().drift_reference_dir, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    log.info("drift reference written", extra={"model": name, "version": version, "path": str(path)})
    body = (
        f"Written to `{path}` ({profile.n} images: {source}). The api's drift check "
        f"(`GET /api/v1/drift/{name}`, the periodic job) compares {name} {version}'s traffic with it."
    )
    return ReportSection("Drift reference", body, "drift_reference", {"path": str(path), "n": profile.n})


def shadow_section(database_url: str) -> SectionBuilder:
    """A section with the candidate's shadow agreement, read from the inference log at ``database_url``."""

    def build(run: GateRun) -> ReportSection | None:
        from kernel.db.session import create_db_engine
        from services.shadow.report import as_markdown, shadow_agreement

        engine = create_db_engine(database_url)
        try:
            report = shadow_agreement(engine, model=run.gate.name, version=run.candidate.version)
        finally:
            engine.dispose()
        if not report.get("items"):
            body = f"No shadow answers of {run.candidate.tag} in the inference log: it never ran in stage `shadow`."
            return ReportSection("Shadow agreement", body, "shadow", report)
        return ReportSection("Shadow agreement", as_markdown(report), "shadow", report)

    return build


EXTENSIONS: tuple[SectionBuilder, ...] = (drift_reference,)


def extensions_for(inference_log: str | None) -> tuple[SectionBuilder, ...]:
    """The extensions of one run: the drift reference, and the shadow agreement when an inference log is given."""
    optional: tuple[Callable[[GateRun], ReportSection | None], ...] = (
        (shadow_section(inference_log),) if inference_log else ()
    )
    return (*EXTENSIONS, *optional)
