"""The api service: the public routes, composing the model services with ``bentoml.depends``.

Composition root of the api process. ``bentoml serve services.api:Api`` starts the
model services beside it; with ``CV_CLASSIFIER_URL`` (etc.) set, it reaches model
services deployed apart instead. The data plane (inference logs, result cache) is built in
``__init__``, which runs in the api process only.
"""

from __future__ import annotations

from typing import Any

import bentoml

from services.classifier import Classifier
from services.config import get_settings
from services.detector import Detector
from services.embedder import Embedder
from services.http.app import create_app
from services.http.backend import Backend, RemoteBackend
from services.http.dataplane import DataPlane
from services.logging import configure_logging

settings = get_settings()


def _current_backend() -> Backend:
    backend: Backend = bentoml.get_current_service().backend
    return backend


def _current_data_plane() -> DataPlane | None:
    plane: DataPlane | None = getattr(bentoml.get_current_service(), "data_plane", None)
    return plane


app = create_app(settings, backend=_current_backend, data_plane=_current_data_plane)


def _depends(service: Any, url: str | None) -> Any:
    return bentoml.depends(service, url=url) if url else bentoml.depends(service)


@bentoml.service(name="api", workers=1, traffic={"timeout": 120, "max_concurrency": 512})
@bentoml.asgi_app(app, path="/api/v1")
class Api:
    """Public API: classify, detect, search, gallery, batch, models, health, metrics."""

    classifier = _depends(Classifier, settings.classifier_url)
    detector = _depends(Detector, settings.detector_url)
    embedder = _depends(Embedder, settings.embedder_url)

    def __init__(self) -> None:
        configure_logging(settings.log_level, settings.log_json)
        self.data_plane = DataPlane.from_settings(settings)
        self.backend = self.data_plane.wrap(
            RemoteBackend({"classifier": self.classifier, "detector": self.detector, "embedder": self.embedder})
        )

    @bentoml.on_shutdown
    async def close_data_plane(self) -> None:
        """Flush buffered inference logs (to the spool if the database is away) and close the cache."""
        await self.data_plane.close()
