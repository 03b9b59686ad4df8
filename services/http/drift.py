"""Route: GET /drift/{model}, the drift check run on demand (services/drift/monitor.py)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from kernel.errors import DriftUnavailable, InvalidParameter, NotFound
from services.drift.monitor import DriftMonitor, DriftPolicy
from services.http.deps import DataPlaneDep, SettingsDep
from services.http.schemas import DriftResponse, DriftTestResult
from services.models.catalogue import MODEL_NAMES

router = APIRouter(tags=["monitoring"])
WindowQuery = Annotated[
    int | None, Query(ge=1, description="Latest answered requests to compare (default: CV_DRIFT_WINDOW)")
]
VersionQuery = Annotated[
    str | None, Query(max_length=64, description="Only this version's requests (default: the one most of them ran)")
]


@router.get("/drift/{model}", response_model=DriftResponse)
async def drift(
    settings: SettingsDep,
    data_plane: DataPlaneDep,
    model: Annotated[str, Path(description=f"One of {', '.join(MODEL_NAMES)}")],
    window: WindowQuery = None,
    version: VersionQuery = None,
) -> DriftResponse:
    """Drift of a model's latest requests from its reference: each test's statistic and p-value, and a verdict."""
    if model not in MODEL_NAMES:
        raise NotFound(f"no model {model!r}; models: {', '.join(MODEL_NAMES)}")
    if window is not None and window > settings.drift_max_window:
        raise InvalidParameter(f"window: at most {settings.drift_max_window} requests (CV_DRIFT_MAX_WINDOW)")
    if data_plane is None:
        raise DriftUnavailable("this server keeps no inference log to compare")
    monitor = DriftMonitor(data_plane.engine, DriftPolicy.from_settings(settings))
    # This replica's buffered records first, so the window ends with the requests it has just answered.
    await run_in_threadpool(data_plane.log_writer.flush)
    result = await run_in_threadpool(partial(monitor.check, model, window=window, version=version))
    return DriftResponse(
        model=result.model,
        version=result.version,
        window=result.window,
        n=result.n,
        verdict=result.verdict,  # type: ignore[arg-type]  # the column is a string; compare() made it
        alpha=result.alpha,
        tests=[DriftTestResult.model_validate(t) for t in result.tests],
        checked_at=result.created_at,
    )
