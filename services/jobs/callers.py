"""How a job worker reaches the models: the model services over HTTP, or the models in its own process.

Where the model services can be reached (``CV_CLASSIFIER_URL`` / ``CV_DETECTOR_URL``, or the
addresses ``bentoml serve`` hands to the processes it starts, which the embedded worker inherits
from the api) the worker calls them as the api does, so their adaptive batching merges job items
with live traffic and scaling the model services scales the jobs. A worker started on its own in
local mode, with neither, loads the models it needs in its own process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from kernel.errors import ModelUnavailable, ServiceError
from services.config import ServingSettings
from services.models.worker import InferenceItem, ModelWorker, Outcome, build_pool

log = logging.getLogger(__name__)

JOB_MODELS = ("classifier", "detector")
# The media types bentoml.depends uses: pickle to the model services `bentoml serve` started beside the api
# (the pixels travel as numpy arrays), JSON to a service deployed apart (a "main" server refuses pickle; the
# pixels travel as base64, services/models/worker.py's RGBArray).
PICKLE = "application/vnd.bentoml+pickle"
JSON = "application/json"


class ModelCaller(Protocol):
    """Runs a batch of items on a model; one outcome per item."""

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]: ...


class InProcessCaller:
    """The models in this process, each loaded on first use (a classify-only worker never loads the detector)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._workers: dict[str, ModelWorker] = {}

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        worker = self._workers.get(model)
        if worker is None:
            worker = self._workers[model] = ModelWorker(build_pool(model, self.settings))
        return worker.run(items)


def _bentoml_client(model: str, url: str, media_type: str = PICKLE) -> Any:
    # BentoML's own HTTP client with the media type bentoml.depends uses (the public SyncHTTPClient fixes JSON,
    # which cannot carry numpy pixels); bentoml is pinned (pyproject.toml), so this internal import is stable.
    from _bentoml_impl.client.http import SyncHTTPClient

    from services.classifier import Classifier
    from services.detector import Detector

    service = {"classifier": Classifier, "detector": Detector}[model]
    return SyncHTTPClient(url, media_type=media_type, service=service, server_ready_timeout=0, timeout=300)


class ServiceCaller:
    """The model services at ``urls``; any model without a URL goes to ``fallback``."""

    def __init__(
        self,
        urls: dict[str, str],
        fallback: ModelCaller | None = None,
        client_factory: Callable[[str, str], Any] = _bentoml_client,
    ) -> None:
        self.urls = urls
        self.fallback = fallback
        self._factory = client_factory
        self._clients: dict[str, Any] = {}

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        if model not in self.urls:
            if self.fallback is None:
                raise ModelUnavailable(f"no address for the {model} service")
            return self.fallback.infer(model, items)
        try:
            client = self._clients.get(model)
            if client is None:
                client = self._clients[model] = self._factory(model, self.urls[model])
            answers = client.infer(items)
        except ServiceError:
            raise
        except Exception as exc:  # connection refused, timeouts, 503 "overloaded": all worth a retry
            log.warning("model service call failed", extra={"model": model, "error": repr(exc)})
            self._clients.pop(model, None)  # a fresh client next time
            raise ModelUnavailable(f"the {model} service is unreachable or failed") from exc
        return [Outcome.model_validate(a) for a in answers]


def model_caller(settings: ServingSettings) -> ModelCaller:
    """The model services where their addresses are known; the models in process otherwise."""
    explicit = {"classifier": settings.classifier_url, "detector": settings.detector_url}
    urls = {m: url for m in JOB_MODELS if (url := explicit[m] or settings.bentoml_runner_map.get(m))}
    local = InProcessCaller(settings)
    if not urls:
        log.info("job worker runs the models in process")
        return local
    log.info("job worker calls the model services", extra={"urls": urls})

    def client(model: str, url: str) -> Any:
        return _bentoml_client(model, url, JSON if explicit[model] else PICKLE)

    return ServiceCaller(urls, fallback=local, client_factory=client)
