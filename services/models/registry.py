"""The registry of model families and the pool of loaded versions of one model.

``FAMILIES`` is the explicit ``{(task, arch): class}`` map (STYLE.md, habit 2). A
:class:`ModelPool` holds every loaded version of one model, each with one ONNX Runtime
session per precision, chooses the default by pin or stage, and falls back (INT8 ->
FP32, then other versions) when a run fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernel.errors import ModelUnavailable, ServiceError, VersionNotFound
from services.config import Stage
from services.metrics import FALLBACKS, INFERENCE_ERRORS, INFERENCE_ITEMS, MODEL_LOADED
from services.models.classification import Classifier
from services.models.contract import Model, Params, Prediction, Runner
from services.models.detection import YoloxDetector
from services.models.embedding import Embedder
from services.models.spec import LoadedFiles, ModelSpec

log = logging.getLogger(__name__)

FAMILIES: dict[tuple[str, str], type[Model[Any]]] = {
    ("classification", "efficientnet_lite0"): Classifier,
    ("detection", "yolox"): YoloxDetector,
    ("embedding", "efficientnet_lite0"): Embedder,
}
PRECISION_ORDER = ("int8", "fp32")
STAGE_ORDER = {Stage.PRODUCTION: 0, Stage.CANARY: 1, Stage.SHADOW: 2, Stage.ARCHIVED: 3}


class UnknownFamily(LookupError):
    """No family is registered for a (task, arch) pair."""


def family_for(task: str, arch: str) -> type[Model[Any]]:
    """The model class for ``(task, arch)``."""
    try:
        return FAMILIES[(task, arch)]
    except KeyError:
        known = ", ".join(f"{t}/{a}" for t, a in sorted(FAMILIES))
        raise UnknownFamily(f"no model family for task={task!r} arch={arch!r}; known: {known}") from None


RunnerFactory = Callable[[Path, ModelSpec], Runner]


@dataclass
class LoadedVersion:
    """One version: a model per loaded precision and what went wrong with the others."""

    spec: ModelSpec
    models: dict[str, Model[Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if not self.models:
            return "down"
        return "degraded" if self.errors else "ok"

    def precisions(self, prefer_int8: bool) -> list[str]:
        order = PRECISION_ORDER if prefer_int8 else tuple(reversed(PRECISION_ORDER))
        return [p for p in order if p in self.models]

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.spec.version,
            "stage": self.spec.stage.value,
            "state": self.state,
            "precisions": {p: ("loaded" if p in self.models else "failed") for p in self.spec.files},
            "errors": dict(self.errors),
            "metadata": self.spec.public(),
        }


class ModelPool:
    """Every loaded version of one model, with default selection and fallback."""

    def __init__(
        self,
        name: str,
        entries: Sequence[LoadedFiles],
        runner_factory: RunnerFactory,
        *,
        pinned_default: str | None = None,
        prefer_int8: bool = True,
        max_versions: int = 3,
    ) -> None:
        self.name = name
        self.prefer_int8 = prefer_int8
        self.pinned_default = pinned_default
        self.versions: dict[str, LoadedVersion] = {}
        for entry in self._choose(entries, max_versions):
            self.versions[entry.spec.version] = self._load(entry, runner_factory)

    def _choose(self, entries: Sequence[LoadedFiles], limit: int) -> list[LoadedFiles]:
        """The versions worth holding: the pin, then by stage, newest first."""
        ranked = sorted(
            reversed(list(entries)),  # newest first within a stage
            key=lambda e: (e.spec.version != self.pinned_default, STAGE_ORDER[e.spec.stage]),
        )
        return [e for e in ranked if e.spec.stage != Stage.ARCHIVED or e.spec.version == self.pinned_default][:limit]

    def _load(self, entry: LoadedFiles, runner_factory: RunnerFactory) -> LoadedVersion:
        loaded = LoadedVersion(spec=entry.spec)
        try:
            family = family_for(entry.spec.task, entry.spec.arch)
        except UnknownFamily as exc:
            loaded.errors["all"] = str(exc)
            return loaded
        for precision, path in entry.paths.items():
            try:
                runner = runner_factory(path, entry.spec)
                loaded.models[precision] = family(entry.spec, runner, precision=precision)
                MODEL_LOADED.labels(self.name, entry.spec.version, precision).set(1)
            except Exception as exc:
                loaded.errors[precision] = f"load failed: {exc}"
                MODEL_LOADED.labels(self.name, entry.spec.version, precision).set(0)
                log.error(
                    "model load failed", extra={"model": entry.spec.tag, "precision": precision, "error": str(exc)}
                )
        return loaded

    @property
    def default_version(self) -> str | None:
        """The pinned version if loaded, else the best-staged loaded one (newest wins ties)."""
        runnable = [v for v in self.versions.values() if v.models]
        if self.pinned_default and self.pinned_default in self.versions and self.versions[self.pinned_default].models:
            return self.pinned_default
        if not runnable:
            return None
        return min(runnable, key=lambda v: STAGE_ORDER[v.spec.stage]).spec.version

    def candidates(self, version: str | None) -> list[LoadedVersion]:
        """Versions to try in order: the pinned one alone, or the default then the rest."""
        if version is not None:
            if version not in self.versions:
                raise VersionNotFound(f"{self.name} has no loaded version {version!r}; loaded: {sorted(self.versions)}")
            return [self.versions[version]]
        default = self.default_version
        rest = sorted(
            (v for v in self.versions.values() if v.spec.version != default and v.models),
            key=lambda v: STAGE_ORDER[v.spec.stage],
        )
        return ([self.versions[default]] if default else []) + rest

    def infer(self, images: Sequence[np.ndarray], params: Sequence[Params], version: str | None) -> list[Prediction]:
        """Run a batch on the first version and precision that succeeds."""
        first: tuple[str, str] | None = None
        last_error = "no version is loaded"
        for candidate in self.candidates(version):
            for precision in candidate.precisions(self.prefer_int8):
                first = first or (candidate.spec.version, precision)
                try:
                    predictions = candidate.models[precision].infer(images, params)
                except Exception as exc:
                    if is_client_error(exc):
                        raise
                    last_error = f"{candidate.spec.tag} ({precision}) failed: {exc}"
                    self._record_failure(candidate, precision, exc)
                    continue
                self._record_success(first, candidate, precision, len(images))
                return predictions
        raise ModelUnavailable(f"no version of {self.name} could answer: {last_error}")

    def warm_up(self) -> str | None:
        """Warm the model a request without ``version`` reaches first (:meth:`Model.warm_up`); returns its tag.

        Never fails start-up: a warm-up that raises is logged, and the version answers (or falls back) as it would.
        """
        loaded = [(v, p) for v in self.candidates(None) for p in v.precisions(self.prefer_int8)]
        if not loaded:
            return None
        version, precision = loaded[0]
        try:
            version.models[precision].warm_up()
        except Exception as exc:
            log.warning("warm-up failed", extra={"model": version.spec.tag, "precision": precision, "error": str(exc)})
            return None
        return f"{version.spec.tag} ({precision})"

    def _record_failure(self, candidate: LoadedVersion, precision: str, exc: Exception) -> None:
        candidate.errors[precision] = f"run failed: {exc}"
        INFERENCE_ERRORS.labels(self.name, candidate.spec.version, type(exc).__name__).inc()
        log.error("inference failed", extra={"model": candidate.spec.tag, "precision": precision, "error": str(exc)})

    def _record_success(self, first: tuple[str, str], candidate: LoadedVersion, precision: str, n: int) -> None:
        if candidate.errors.get(precision, "").startswith("run failed"):
            del candidate.errors[precision]  # a later success heals a transient run failure
        version = candidate.spec.version
        INFERENCE_ITEMS.labels(self.name, version, "ok").inc(n)
        if first != (version, precision):
            FALLBACKS.labels(self.name, f"{first[0]}/{first[1]}", f"{version}/{precision}").inc(n)

    def status(self) -> dict[str, Any]:
        """Readiness of this model: ok, degraded or down, and every version's state."""
        default = self.default_version
        states = [v.state for v in self.versions.values()]
        if default is None:
            overall = "down"
        elif all(s == "ok" for s in states):
            overall = "ok"
        else:
            overall = "degraded"
        return {
            "model": self.name,
            "status": overall,
            "default_version": default,
            "versions": [v.describe() for v in self.versions.values()],
        }


def is_client_error(exc: Exception) -> bool:
    """Errors that are the caller's, not the model's (never trigger a fallback)."""
    return isinstance(exc, ServiceError) and exc.status_code < 500
