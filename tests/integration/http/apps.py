"""The public API in process with a data plane (logs, cache) built from settings, as the api service builds it.

With :func:`job_app`, batch jobs too: a dispatcher that hands each chunk to the real ChunkProcessor over the
in-process models, when the test says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.app import Gateway
from gateway.inprocess import install_gateway
from kernel.db.tables import InferenceLog
from services.clients.base import AsyncModelClient
from services.clients.threaded import ThreadedClient
from services.config import ServingSettings
from services.db.logs import list_inference_logs
from services.http.app import IN_PROCESS_PUBLIC_PATHS, create_app
from services.http.dataplane import DataPlane
from services.http.deps import JobsProvider
from services.jobs.processing import ChunkProcessor, ImageLimits
from services.jobs.queue import JobQueue
from services.jobs.store import ImageStore
from services.models.worker import InferenceItem, Outcome


@contextmanager
def data_plane_client(
    backend: AsyncModelClient,
    settings: ServingSettings,
    jobs: JobsProvider | None = None,
    gateway: Callable[[], Gateway] | None = None,
) -> Iterator[tuple[TestClient, DataPlane]]:
    """A test client for ``/api/v1`` over ``backend`` wrapped by a fresh data plane (and ``jobs``); closed after."""
    plane = DataPlane.from_settings(settings)
    wrapped = plane.wrap(backend)
    app = create_app(settings, backend=lambda: wrapped, data_plane=lambda: plane, jobs=jobs)
    if gateway is not None:
        install_gateway(app, gateway, IN_PROCESS_PUBLIC_PATHS)
    parent = Starlette(routes=[Mount("/api/v1", app=app)])
    with TestClient(parent, base_url="http://testserver/api/v1", raise_server_exceptions=False) as client:
        try:
            yield client, plane
        finally:
            client.portal.call(plane.close)  # type: ignore[union-attr]  # in the loop that used the cache


def logged_rows(plane: DataPlane, request_id: str | None = None) -> list[InferenceLog]:
    """Flush the writer and read the stored rows (of one request)."""
    plane.log_writer.flush()
    with Session(plane.engine) as session:
        return list_inference_logs(session=session, request_id=request_id)


class LocalModels:
    """The job worker's side of the in-process models: the sync client under the routes' threaded one."""

    def __init__(self, backend: ThreadedClient) -> None:
        self.backend = backend

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return self.backend.inner.infer(model, items)


@dataclass
class StepDispatcher:
    """Keeps the chunks it is sent; runs them on :meth:`run` (or at once when ``auto``)."""

    processor: ChunkProcessor | None = None
    auto: bool = False
    chunks: list[tuple[str, list[int]]] = field(default_factory=list)

    def send(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None:
        self.chunks.extend((job_id, c) for c in chunks)
        if self.auto:
            self.run()

    def run(self) -> None:
        assert self.processor is not None
        while self.chunks:
            job_id, chunk = self.chunks.pop(0)
            assert self.processor.process(job_id, chunk) is None


@dataclass
class JobApp:
    client: TestClient
    plane: DataPlane
    dispatcher: StepDispatcher


@contextmanager
def job_app(backend: ThreadedClient, settings: ServingSettings) -> Iterator[JobApp]:
    """:func:`data_plane_client` with a job queue whose chunks wait in a :class:`StepDispatcher`."""
    dispatcher = StepDispatcher()
    holder: dict[str, JobQueue] = {}
    with data_plane_client(backend, settings, jobs=lambda: holder.get("jobs")) as (client, plane):
        store = ImageStore(settings.job_store)
        dispatcher.processor = ChunkProcessor(
            engine=plane.engine,
            store=store,
            models=LocalModels(backend),
            limits=ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        )
        holder["jobs"] = JobQueue(
            engine=plane.engine, store=store, dispatcher=dispatcher, chunk_size=settings.jobs_chunk_size
        )
        yield JobApp(client, plane, dispatcher)
