"""Routes: GET /models, /health and /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from kernel.errors import ServiceError
from services.http.deps import BackendDep, DataPlaneDep, JobsDep, SettingsDep
from services.metrics import render_metrics
from services.models.catalogue import MODEL_NAMES

router = APIRouter(tags=["operations"])


async def _statuses(backend: BackendDep) -> dict[str, dict[str, Any]]:
    async def one(name: str) -> dict[str, Any]:
        try:
            return await backend.status(name)
        except ServiceError as exc:
            return {"model": name, "status": "down", "error": exc.public_message, "versions": []}

    results = await asyncio.gather(*(one(n) for n in MODEL_NAMES))
    return dict(zip(MODEL_NAMES, results, strict=True))


@router.get("/models")
async def models(backend: BackendDep) -> dict[str, Any]:
    """Every model: versions, stage, metadata and load state."""
    statuses = await _statuses(backend)
    return {"models": list(statuses.values())}


@router.get("/health")
async def health(backend: BackendDep, data_plane: DataPlaneDep, jobs: JobsDep, response: Response) -> dict[str, Any]:
    """Liveness; readiness of each model, the log sink, the cache and the job workers; 503 when no model can serve."""
    statuses = await _statuses(backend)
    states = {name: s["status"] for name, s in statuses.items()}
    data = await data_plane.health() if data_plane is not None else {}
    if jobs is not None:
        data["jobs"] = await run_in_threadpool(jobs.health)
    if all(s == "down" for s in states.values()):
        overall = "down"
    elif all(s == "ok" for s in [*states.values(), *(part["status"] for part in data.values())]):
        overall = "ok"
    else:
        overall = "degraded"
    if overall == "down":
        response.status_code = 503
    body: dict[str, Any] = {"status": overall, "live": True, "models": states}
    if data:
        body["data"] = data
    return body


@router.get("/metrics")
async def metrics(settings: SettingsDep) -> Response:
    """Prometheus exposition of every serving process."""
    body, content_type = render_metrics(settings.prometheus_multiproc_dir)
    return Response(content=body, media_type=content_type)
