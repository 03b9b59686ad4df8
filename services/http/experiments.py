"""Routes: GET /experiments and /experiments/{experiment_id}; and the arm a classify or detect request gets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from fastapi import APIRouter, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from kernel.db.tables import Experiment
from kernel.errors import DatabaseUnavailable, NotFound
from kernel.headers import CLIENT_ID_HEADER
from services.config import ServingSettings
from services.experiments.report import analyze_experiment
from services.experiments.snapshot import Assignment
from services.experiments.store import aware, get_experiment, list_experiments
from services.http.context import current_context
from services.http.dataplane import DataPlane
from services.http.deps import DataPlaneDep
from services.http.recording import attribute_experiment
from services.http.schemas import ExperimentResponse, ExperimentsResponse, ExperimentSummary

router = APIRouter(tags=["experiments"])
T = TypeVar("T")


def client_id(settings: ServingSettings, request: Request) -> str:
    """Who the request is for an experiment's assignment.

    The gateway's client (its API key's) when the gateway's headers are trusted; in local mode without a
    gateway, the caller's own ``X-Client-Id``; else the request id, which assigns each request anew.
    """
    context = current_context()
    if context.client_id:
        return context.client_id
    own = request.headers.get(CLIENT_ID_HEADER)
    if own and settings.environment == "local" and not settings.gateway_headers_trusted:
        return own[:128]
    return context.request_id or ""


async def experiment_version(
    request: Request, plane: DataPlane | None, model: str, version: str | None
) -> tuple[str | None, Assignment | None]:
    """The version to pin and the assignment that chose it; a pinned ``version`` bypasses experiments."""
    if version is not None or plane is None:
        return version, None
    settings: ServingSettings = request.app.state.settings
    assignment = await plane.experiments.assign(model, client_id(settings, request))
    if assignment is None:
        return None, None
    attribute_experiment(assignment.experiment, assignment.arm)
    return assignment.version, assignment


async def in_session(plane: DataPlane | None, work: Callable[[Session], T]) -> T:
    """Run ``work`` in a session of the data plane's database, off the event loop (503 without one)."""
    if plane is None:
        raise DatabaseUnavailable("this server keeps no database")

    def run() -> T:
        with Session(plane.engine) as session:
            result = work(session)
            session.commit()
            return result

    return await run_in_threadpool(run)


def summary(row: Experiment, now: datetime | None = None) -> dict[str, object]:
    """An experiment's definition and state, as the routes show it."""
    moment = now or datetime.now(UTC)
    start, end = aware(row.start_at), aware(row.end_at)
    running = row.status == "active" and (start is None or start <= moment) and (end is None or moment < end)
    return {
        "id": row.id,
        "model": row.model,
        "status": row.status,
        "running": running,
        "arms": row.arms,
        "start_at": start,
        "end_at": end,
        "created_at": aware(row.created_at),
        "updated_at": aware(row.updated_at),
    }


@router.get("/experiments", response_model=ExperimentsResponse)
async def experiments(plane: DataPlaneDep) -> ExperimentsResponse:
    """Every A/B experiment, newest first."""
    rows = await in_session(plane, lambda s: [summary(r) for r in list_experiments(session=s)])
    return ExperimentsResponse(experiments=[ExperimentSummary.model_validate(r) for r in rows])


@router.get("/experiments/{experiment_id}", response_model=ExperimentResponse)
async def experiment(plane: DataPlaneDep, experiment_id: str) -> ExperimentResponse:
    """One A/B experiment with its analysis: per-arm counts and metrics, the tests and their decisions."""

    def read(session: Session) -> dict[str, object] | None:
        row = get_experiment(session=session, experiment_id=experiment_id)
        if row is None:
            return None
        analysis = analyze_experiment(session=session, experiment=row)
        return summary(row) | {"analysis": analysis.model_dump(mode="json")}

    body = await in_session(plane, read)
    if body is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    return ExperimentResponse.model_validate(body)
