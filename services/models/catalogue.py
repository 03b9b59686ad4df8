"""The one list of the models this API serves, and what each one is for.

Everything that enumerates the models reads it: the public routes and the batch tasks, the
inference log, the model clients, the job workers, the native production topology, the
training tools and the benchmarks. Adding a model means adding an entry here, a family in
``services/models/registry.py``, a BentoML service and an import under ``bentos/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.imaging import DecodedImage, DecodeFloor
from services.models.spec import Task


class UnknownModel(LookupError):
    """A name (or batch task) that is not in the catalogue."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One served model.

    Attributes:
        name: The model's name in the model store, the service and the inference log.
        task: The family's task (``ModelSpec.task``).
        route: Its public route under ``/api/v1``.
        service: The BentoML service class, as ``module:Class`` (imported only where a service is built or
            started: importing one loads BentoML).
        job_task: The ``task`` of ``POST /batch`` (and of batch jobs) that runs it; None when batches cannot.
        decode_floor: The least of an upload every version of it resizes from (``preprocessing.decode_floor`` of
            its input spec; tests/unit/services/models/test_catalogue.py holds every stored version to it): the
            api decodes larger JPEGs at a reduced scale. None: always full size.
    """

    name: str
    task: Task
    route: str
    service: str
    job_task: str | None = None
    decode_floor: DecodeFloor | None = None

    @property
    def service_module(self) -> str:
        return self.service.partition(":")[0]

    @property
    def service_class(self) -> str:
        return self.service.partition(":")[2]

    @property
    def url_env(self) -> str:
        """The setting that points the api and the job workers at this service deployed apart."""
        return f"CV_{self.name.upper()}_URL"


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        "classifier",
        "classification",
        "/classify",
        "services.classifier:ClassifierService",
        "classify",
        DecodeFloor("shorter", 224),
    ),
    CatalogueEntry(
        "detector", "detection", "/detect", "services.detector:DetectorService", "detect", DecodeFloor("longer", 416)
    ),
    CatalogueEntry(
        "embedder",
        "embedding",
        "/search",
        "services.embedder:EmbedderService",
        decode_floor=DecodeFloor("shorter", 224),
    ),
)

MODEL_NAMES: tuple[str, ...] = tuple(entry.name for entry in CATALOGUE)
# POST /batch's task -> the model it runs (the models batch jobs may use).
JOB_TASKS: dict[str, str] = {entry.job_task: entry.name for entry in CATALOGUE if entry.job_task}
JOB_MODELS: tuple[str, ...] = tuple(JOB_TASKS.values())


def decode_floor(name: str) -> DecodeFloor | None:
    """What model ``name`` needs of an upload (``CatalogueEntry.decode_floor``)."""
    return entry(name).decode_floor


def image_params(name: str, image: DecodedImage, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus what a model answering in image coordinates needs when ``image`` was decoded reduced."""
    if entry(name).task != "detection":
        return params
    return {**params, **image.coordinates()}  # nothing added for an image decoded at full size


def entry(name: str) -> CatalogueEntry:
    """The catalogue entry of model ``name``."""
    for candidate in CATALOGUE:
        if candidate.name == name:
            return candidate
    raise UnknownModel(f"no model {name!r}; the catalogue has {', '.join(MODEL_NAMES)}")


def model_for_task(task: str) -> str:
    """The model a batch ``task`` runs (``classify`` -> ``classifier``)."""
    try:
        return JOB_TASKS[task]
    except KeyError:
        raise UnknownModel(f"no model runs batch task {task!r}; tasks: {', '.join(JOB_TASKS)}") from None
