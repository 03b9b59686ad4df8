"""Which model client a job worker uses: the model services where their addresses are known, else in process.

Where the model services can be reached (``CV_CLASSIFIER_URL`` / ``CV_DETECTOR_URL``, or the addresses
``bentoml serve`` hands to the processes it starts, which the embedded worker inherits from the api) the
worker calls them as the api does, so their adaptive batching merges job items with live traffic and
scaling the model services scales the jobs. A worker started on its own in local mode, with neither, loads
the models it needs in its own process.
"""

from __future__ import annotations

import logging
from typing import Any

from services.clients.base import ModelClient
from services.clients.inprocess import InProcessClient
from services.clients.remote import JSON, PICKLE, RemoteClient, bentoml_client
from services.config import ServingSettings
from services.models.catalogue import JOB_MODELS

log = logging.getLogger(__name__)


def explicit_urls(settings: ServingSettings) -> dict[str, str]:
    """The job models' ``CV_<MODEL>_URL`` settings that are set (services deployed apart)."""
    return {name: url for name, url in settings.model_urls.items() if name in JOB_MODELS}


def job_client(settings: ServingSettings) -> ModelClient:
    """The model services where their addresses are known; the models in process otherwise.

    A service at an explicit URL is a BentoML main server, which refuses pickle: it is spoken to in JSON;
    one that ``bentoml serve`` started (``BENTOML_RUNNER_MAP``) takes pickle.
    """
    explicit = explicit_urls(settings)
    urls = {m: url for m in JOB_MODELS if (url := explicit.get(m) or settings.bentoml_runner_map.get(m))}
    # A job is background work: its runs never take a model's solo session (ADR 0019), whose spinning threads would
    # take cores from the requests the api answers meanwhile.
    local = InProcessClient(settings.model_copy(update={"ort_solo_threads": 0}))
    if not urls:
        log.info("job worker runs the models in process")
        return local
    log.info("job worker calls the model services", extra={"urls": urls})

    def connect(model: str) -> Any:
        return bentoml_client(model, urls[model], JSON if model in explicit else PICKLE)

    return RemoteClient(connect, urls, fallback=local)
