"""The public API in process with a data plane (logs, cache) built from settings, as the api service builds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.app import Gateway
from gateway.inprocess import install_gateway
from kernel.db.tables import InferenceLog
from services.clients.base import AsyncModelClient
from services.config import ServingSettings
from services.db.logs import list_inference_logs
from services.http.app import IN_PROCESS_PUBLIC_PATHS, create_app
from services.http.dataplane import DataPlane
from services.http.deps import JobsProvider


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
