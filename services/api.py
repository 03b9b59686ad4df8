"""The api service: the public routes, composing the model services with ``bentoml.depends``.

Composition root of the api process. ``bentoml serve services.api:Api`` starts the
model services beside it; with ``CV_CLASSIFIER_URL`` (etc.) set, it reaches model
services deployed apart instead. The data plane (inference logs, result cache) is built in
``__init__``, which runs in the api process only, as do the batch-job queue and, in local mode,
the job worker it starts beside itself (services/jobs/embedded.py). The public routes are built there too, and
everything they need imported there: BentoML's supervisor imports this module to read the service's configuration,
and without those imports it holds 58 MB of its own memory instead of 167 (services/http/deferred.py).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

import bentoml

from kernel.logging import configure_logging
from services.classifier import ClassifierService
from services.config import get_settings
from services.detector import DetectorService
from services.embedder import EmbedderService
from services.http.deferred import DeferredApp
from services.http.pages import PagesMiddleware
from services.models.catalogue import MODEL_NAMES
from services.process import configure_heap, freeze_startup_objects
from services.tracing import request_spans

if TYPE_CHECKING:
    from fastapi import FastAPI

    from services.clients.base import AsyncModelClient
    from services.http.dataplane import DataPlane
    from services.jobs.queue import JobQueue

settings = get_settings()


def _current_backend() -> AsyncModelClient:
    backend: AsyncModelClient = bentoml.get_current_service().backend
    return backend


def _current_data_plane() -> DataPlane | None:
    plane: DataPlane | None = getattr(bentoml.get_current_service(), "data_plane", None)
    return plane


def _current_jobs() -> JobQueue | None:
    jobs: JobQueue | None = getattr(bentoml.get_current_service(), "jobs", None)
    return jobs


def build_app() -> FastAPI:
    """The public routes. Imported and built here, not at module import: see services/http/deferred.py."""
    from gateway.errors import GATEWAY_ERRORS
    from gateway.inprocess import in_process_gateway, install_gateway
    from services.http.app import IN_PROCESS_PUBLIC_PATHS, create_app
    from services.http.openapi import install_spec

    public = create_app(settings, backend=_current_backend, data_plane=_current_data_plane, jobs=_current_jobs)
    # The gateway's refusals are part of every protected route's answers.
    install_spec(public, extra_errors=GATEWAY_ERRORS)
    if settings.auth_in_process:  # local mode: the gateway's policy in process, as Traefik's ForwardAuth in production
        gateway = partial(in_process_gateway, settings.database_url, settings.data_dir)
        install_gateway(public, gateway, IN_PROCESS_PUBLIC_PATHS)
    return public


# Built by Api.__init__ in the worker; BentoML's supervisor imports this module but never builds it.
app = DeferredApp(build_app)


def _depends(service: Any, url: str | None) -> Any:
    return bentoml.depends(service, url=url) if url else bentoml.depends(service)


@bentoml.service(
    name="api",
    workers=1,
    traffic={"timeout": 120, "max_concurrency": 512},
    logging={"access": {"enabled": settings.bentoml_access_log}},
    # BentoML's HTTP metrics label each request by its raw path: every job id and gallery id polled made new series,
    # for ever (+528 series in a 20-minute soak, benchmarks/reports/memory.md). The api's own cv_http_* metrics label
    # by route template (services/http/middleware.py), so BentoML's are off here; the model services' routes are fixed.
    metrics={"enabled": False},
    tracing=request_spans("api"),  # BentoML's request spans only where tracing is configured (services/tracing.py)
)
@bentoml.asgi_app(app, path="/api/v1")
class Api:
    """Public API: classify, detect, search, gallery, batch, models, health, metrics."""

    if not settings.run_models_in_process:  # otherwise `bentoml serve` starts no model service
        classifier = _depends(ClassifierService, settings.classifier_url)
        detector = _depends(DetectorService, settings.detector_url)
        embedder = _depends(EmbedderService, settings.embedder_url)

    def __init__(self) -> None:
        from services.http.dataplane import DataPlane
        from services.imaging import preload_decoders
        from services.jobs.embedded import EmbeddedWorker, worker_command
        from services.jobs.queue import JobQueue
        from services.models import resample

        configure_logging(settings.log_level, settings.log_json)
        configure_heap(settings.malloc_mmap_threshold_bytes, settings.malloc_trim_interval_s)
        resample.configure(settings.native_resample)
        app.get()  # the routes now, not on the first request
        preload_decoders()  # Pillow's plugins and simplejpeg, which the first upload would import otherwise
        self.data_plane = DataPlane.from_settings(settings)
        self.backend = self.data_plane.wrap(self._models())
        self.jobs = JobQueue.from_settings(settings, engine=self.data_plane.engine)
        # Started after the migrations above, and with this process's environment (the model services' addresses).
        # Its Celery beat sends the periodic drift check (CV_DRIFT_ENABLED).
        command = worker_command(settings, beat=settings.drift_enabled)
        self.job_worker = EmbeddedWorker(command).start() if settings.embedded_worker else None
        freeze_startup_objects(settings.gc_freeze_at_start)  # last: all of the above lives as long as the process

    @bentoml.on_startup
    async def start_shadow_mirror(self) -> None:
        """Start the shadow mirror's tasks on the server's event loop (docs/adr/0011-shadow-traffic.md)."""
        self.data_plane.start()

    def _models(self) -> AsyncModelClient:
        """The model services through their bentoml.depends handles, or the models in this process."""
        from services.clients.batching import MicroBatchingClient
        from services.clients.inprocess import InProcessClient
        from services.clients.remote import AsyncRemoteClient
        from services.clients.threaded import ThreadedClient

        if settings.run_models_in_process:
            models = InProcessClient(settings)
            for name in MODEL_NAMES:  # loaded and warmed now, not on the first request
                models.worker(name).pool.warm_up()
            # Concurrent calls of a model merged into one run (CV_BATCHING_ENABLED), as the model services do.
            return (
                MicroBatchingClient(
                    models,
                    settings.micro_batch_size,
                    settings.max_concurrent_runs,
                    inline_max_pixels=settings.inline_alone_max_pixels,
                )
                if settings.batching_enabled
                else ThreadedClient(models)
            )
        # Each model's bentoml.depends handle is the class attribute named after it.
        return AsyncRemoteClient({name: getattr(self, name) for name in MODEL_NAMES})

    @bentoml.on_shutdown
    async def close_data_plane(self) -> None:
        """Stop the embedded job worker; flush buffered inference logs (to the spool if need be); close the cache."""
        if self.job_worker is not None:
            await asyncio.to_thread(self.job_worker.stop)
        await self.data_plane.close()


# This API's Swagger UI at / and its spec at /docs.json instead of BentoML's page (services/http/pages.py).
Api.add_asgi_middleware(PagesMiddleware, spec=app.openapi)  # type: ignore[attr-defined]  # a bentoml.Service
