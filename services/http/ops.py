"""Routes: GET /models, /health and /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from pydantic import MISSING
from starlette.concurrency import run_in_threadpool

from kernel.errors import ServiceError
from services.drift.monitor import DriftMonitor, DriftPolicy
from services.http.deps import BackendDep, DataPlaneDep, JobsDep, SettingsDep
from services.http.schemas import HealthData, HealthResponse, ModelsResponse, ModelStatus, State
from services.metrics import render_metrics
from services.models.catalogue import MODEL_NAMES

router = APIRouter(tags=["operations"])


async def _statuses(backend: BackendDep) -> dict[str, ModelStatus]:
    async def one(name: str) -> ModelStatus:
        try:
            return ModelStatus.model_validate(await backend.status(name))
        except ServiceError as exc:
            return ModelStatus(model=name, status="down", error=exc.public_message, versions=[])

    results = await asyncio.gather(*(one(n) for n in MODEL_NAMES))
    return dict(zip(MODEL_NAMES, results, strict=True))


@router.get("/models", response_model=ModelsResponse)
async def models(backend: BackendDep) -> ModelsResponse:
    """Every model: versions, stage, metadata and load state."""
    statuses = await _statuses(backend)
    return ModelsResponse(models=list(statuses.values()))


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "No model can serve"}},
)
async def health(backend: BackendDep, data_plane: DataPlaneDep, jobs: JobsDep, response: Response) -> HealthResponse:
    """Liveness; readiness of each model, the log sink, the cache and the job workers; 503 when no model can serve."""
    statuses = await _statuses(backend)
    states = {name: s.status for name, s in statuses.items()}
    data = await data_plane.health() if data_plane is not None else {}
    if jobs is not None:
        data["jobs"] = await run_in_threadpool(jobs.health)
    overall: State
    if all(s == "down" for s in states.values()):
        overall = "down"
    elif all(s == "ok" for s in [*states.values(), *(part["status"] for part in data.values())]):
        overall = "ok"
    else:
        overall = "degraded"
    if overall == "down":
        response.status_code = 503
    return HealthResponse(
        status=overall, live=True, models=states, data=HealthData.model_validate(data) if data else MISSING
    )


@router.get("/metrics", response_class=PlainTextResponse)  # the spec says text, as Prometheus' exposition is
async def metrics(settings: SettingsDep, jobs: JobsDep, data_plane: DataPlaneDep) -> Response:
    """Prometheus exposition of every serving process."""
    if jobs is not None:  # the job gauges are read from the database now (the workers have no metrics port)
        await run_in_threadpool(jobs.record_metrics)
    if data_plane is not None and settings.drift_enabled:  # so are the latest stored drift checks (the workers')
        await run_in_threadpool(DriftMonitor(data_plane.engine, DriftPolicy.from_settings(settings)).export)
    body, content_type = render_metrics(settings.prometheus_multiproc_dir)
    return Response(content=body, media_type=content_type)
