"""Drift checks in production: the latest logged requests of a model against its version's reference profile.

:class:`DriftMonitor` is the serving side of services/drift/ (detect.py does the statistics):

- :meth:`DriftMonitor.check` reads the features of the latest ``window`` answered requests of a model from
  ``inference_log`` (rows without features, from before the column or whose features failed, are skipped;
  answers from the result cache count: they are real traffic), picks the version most of them ran (the pinned
  one when asked; ties go to the most recent), compares that version's rows with its reference profile
  (``<reference_dir>/<model>-<version>.json``) and answers a :class:`~kernel.db.tables.DriftCheckBase`. Nothing
  logged: ``insufficient_data`` with no version. A version without a reference: :class:`ReferenceNotFound`.
- :meth:`DriftMonitor.check_all` is the periodic job (a Celery beat task, services/jobs/tasks.py): every model
  checked with the configured window, each result stored in ``drift_check``.
- :meth:`DriftMonitor.export` sets the Prometheus gauges from the latest stored result of each model; the api
  calls it when scraped (the workers have no metrics port, and every replica then reports the same numbers).

``GET /api/v1/drift/{model}`` (services/http/drift.py) runs :meth:`check` on demand and stores nothing: a GET
changes nothing, and the gauges and alerts follow the scheduled check's configuration only.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from kernel.db.tables import DriftCheck, DriftCheckBase, InferenceLog, utcnow
from kernel.errors import ReferenceNotFound
from services.config import ServingSettings
from services.drift.detect import DriftTest, compare
from services.drift.reference import ReferenceProfile, reference_path
from services.metrics import DRIFT_CHECKED_AT, DRIFT_DETECTED, DRIFT_P_VALUE, DRIFT_ROWS
from services.models.catalogue import MODEL_NAMES

log = logging.getLogger(__name__)

TEST_NAMES: tuple[str, ...] = ("ks", "psi", "chi2", "mmd")  # always exported, 0 when not run
# One comparison at a time per process: one is up to seconds of CPU (the MMD permutations), and two at once only
# take twice as long each while the api's other work waits for the cores.
_RUNNING = threading.Lock()


@dataclass(frozen=True)
class DriftPolicy:
    """How a check is run: the settings' CV_DRIFT_* values."""

    window: int
    alpha: float
    min_rows: int
    permutations: int
    reference_dir: Path

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> DriftPolicy:
        return cls(
            window=settings.drift_window,
            alpha=settings.drift_alpha,
            min_rows=settings.drift_min_rows,
            permutations=settings.drift_permutations,
            reference_dir=settings.drift_reference_dir,
        )


def latest_features(
    session: Session, *, model: str, window: int, version: str | None = None
) -> list[tuple[str | None, dict[str, Any]]]:
    """``(version, features)`` of the latest ``window`` answered rows of ``model`` that have features, newest first.

    One index range scan, backwards, of ``ix_inference_log_model_created_at``.
    """
    query = select(InferenceLog.version, InferenceLog.features).where(
        col(InferenceLog.model) == model, col(InferenceLog.status) == 200, col(InferenceLog.features).is_not(None)
    )
    if version is not None:
        query = query.where(col(InferenceLog.version) == version)
    rows = session.exec(query.order_by(col(InferenceLog.created_at).desc()).limit(window))
    return [(row_version, dict(features)) for row_version, features in rows if features]


def dominant_version(rows: Sequence[tuple[str | None, dict[str, Any]]]) -> str | None:
    """The version most rows ran; on a tie the one seen first (rows are newest first); None without rows."""
    counts = Counter(version for version, _ in rows if version is not None)
    return counts.most_common(1)[0][0] if counts else None


@lru_cache(maxsize=16)
def _load_reference(path: Path, mtime_ns: int) -> ReferenceProfile:
    """A reference file, parsed once per version of the file (``mtime_ns`` is the cache key's freshness)."""
    return ReferenceProfile.load(path)


def load_reference(directory: Path, model: str, version: str) -> ReferenceProfile:
    """The reference profile of ``model`` ``version``.

    Raises:
        ReferenceNotFound: ``directory`` has none for that version.
    """
    path = reference_path(directory, model, version)
    try:
        mtime_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ReferenceNotFound(
            f"no drift reference for {model} version {version!r} (expected {path.name} in CV_DRIFT_REFERENCE_DIR)"
        ) from None
    return _load_reference(path, mtime_ns)


def _finite(value: float | None) -> float | None:
    """JSON (and PostgreSQL's JSONB) have no NaN or infinity: such a value is stored and answered as null."""
    return value if value is None or math.isfinite(value) else None


def as_row(test: DriftTest) -> dict[str, Any]:
    """One test as the ``tests`` column and the route's answer carry it."""
    return {
        "name": test.name,
        "feature": test.feature,
        "statistic": _finite(test.statistic),
        "p_value": _finite(test.p_value),
        "adjusted_p_value": _finite(test.adjusted_p_value),
        "drift": test.drift,
    }


class DriftMonitor:
    """Runs drift checks over the inference log, stores the periodic ones, exports the latest as gauges."""

    def __init__(self, engine: Engine, policy: DriftPolicy, *, models: Sequence[str] = MODEL_NAMES) -> None:
        self.engine = engine
        self.policy = policy
        self.models = tuple(models)

    def check(self, model: str, *, window: int | None = None, version: str | None = None) -> DriftCheckBase:
        """Compare the latest ``window`` answered requests of ``model`` with its version's reference.

        Raises:
            ReferenceNotFound: Requests were logged, but their version has no reference profile.
        """
        window = window or self.policy.window
        with Session(self.engine) as session:
            rows = latest_features(session, model=model, window=window, version=version)
        version = version or dominant_version(rows)
        common: dict[str, Any] = {"model": model, "window": window, "alpha": self.policy.alpha}
        if version is None:
            return DriftCheckBase(**common, version=None, n=0, verdict="insufficient_data", tests=[])
        reference = load_reference(self.policy.reference_dir, model, version)
        features = [row for row_version, row in rows if row_version == version]
        with _RUNNING:
            report = compare(
                reference,
                features,
                window=window,
                alpha=self.policy.alpha,
                min_rows=self.policy.min_rows,
                permutations=self.policy.permutations,
            )
        return DriftCheckBase(
            **common,
            version=version,
            n=report.n,
            verdict=report.verdict,
            tests=[as_row(t) for t in report.tests],
            created_at=utcnow(),
        )

    def check_all(self) -> list[DriftCheck]:
        """The periodic job: check every model with the configured window and store each result."""
        stored = []
        for model in self.models:
            try:
                result = self.check(model)
            except ReferenceNotFound as exc:
                log.warning("drift check skipped", extra={"model": model, "reason": exc.public_message})
                continue
            with Session(self.engine) as session:
                row = DriftCheck.model_validate(result)
                session.add(row)
                session.commit()
                session.refresh(row)
            log.info(
                "drift check",
                extra={"model": model, "version": row.version, "verdict": row.verdict, "n": row.n},
            )
            stored.append(row)
        return stored

    def latest(self) -> dict[str, DriftCheck]:
        """The latest stored check of each model that has one."""
        with Session(self.engine) as session:
            newest = (
                select(col(DriftCheck.model), func.max(DriftCheck.created_at).label("at"))
                .where(col(DriftCheck.model).in_(self.models))
                .group_by(col(DriftCheck.model))
                .subquery()
            )
            rows = session.exec(
                select(DriftCheck)
                .join(newest, (col(DriftCheck.model) == newest.c.model) & (col(DriftCheck.created_at) == newest.c.at))
                .order_by(col(DriftCheck.id))
            )
            return {row.model: row for row in rows}  # two at the same instant: the later id wins

    def export(self) -> None:
        """Set the drift gauges from the latest stored check of each model; unchanged if the database is away."""
        try:
            latest = self.latest()
        except SQLAlchemyError:  # the scrape keeps its other metrics
            log.warning("drift metrics: the database is unreachable", exc_info=True)
            return
        for row in latest.values():
            export_check(row)


# The p-value labels this process has exported per model: those a newer check did not run become NaN.
_exported: dict[str, set[tuple[str, str]]] = {}


def export_check(row: DriftCheckBase) -> None:
    """Set ``cv_drift_detected``, ``cv_drift_p_value`` and the check's time and size gauges from one check."""
    tests = row.tests or []
    for name in sorted({*TEST_NAMES, *(t["name"] for t in tests)}):
        DRIFT_DETECTED.labels(row.model, name).set(int(any(t["drift"] for t in tests if t["name"] == name)))
    seen: set[tuple[str, str]] = set()
    for test in tests:
        p_value = test["adjusted_p_value"] if test["adjusted_p_value"] is not None else test["p_value"]
        if p_value is None:
            continue  # PSI has none
        DRIFT_P_VALUE.labels(row.model, test["name"], test["feature"]).set(p_value)
        seen.add((test["name"], test["feature"]))
    for name, feature in _exported.get(row.model, set()) - seen:
        DRIFT_P_VALUE.labels(row.model, name, feature).set(math.nan)
    _exported[row.model] = _exported.get(row.model, set()) | seen
    DRIFT_CHECKED_AT.labels(row.model).set(_aware(row.created_at).timestamp())
    DRIFT_ROWS.labels(row.model).set(row.n)


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; they are UTC (kernel/db/tables.py writes them so)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
