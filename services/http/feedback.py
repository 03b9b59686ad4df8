"""Route: POST /feedback, what a client says of an answer (the outcome A/B experiments measure accuracy by)."""

from __future__ import annotations

from typing import Annotated, Self

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from kernel.db.tables import FeedbackBase
from kernel.errors import InvalidParameter, NotFound
from services.experiments.store import logged_answer, save_feedback
from services.http.dataplane import DataPlane
from services.http.deps import DataPlaneDep
from services.http.experiments import in_session
from services.http.schemas import FeedbackResponse

router = APIRouter(tags=["experiments"])


class FeedbackRequest(BaseModel):
    """The answer's request id (and image, for a batch), and either the correct label or a thumbs up/down."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128, description="X-Request-ID of the answer")]
    item_index: Annotated[int, Field(ge=0, description="The image's position in its request")] = 0
    label: Annotated[str | None, Field(min_length=1, max_length=256, description="The correct label")] = None
    correct: Annotated[bool | None, Field(description="Whether the answer was right (thumbs up/down)")] = None

    @model_validator(mode="after")
    def _one_verdict(self) -> Self:
        if (self.label is None) == (self.correct is None):
            raise ValueError("send either label or correct")
        return self


def _same_label(given: str, answered: str | None) -> bool:
    return answered is not None and given.strip().casefold() == answered.strip().casefold()


def _record(body: FeedbackRequest, session: Session) -> FeedbackResponse | None:
    """Store the feedback against the logged answer; None when no answer with that request id is logged."""
    row = logged_answer(session=session, request_id=body.request_id, item_index=body.item_index)
    if row is None:
        return None
    if row.status >= 400:
        raise InvalidParameter(f"request {body.request_id!r} image {body.item_index} was not answered ({row.status})")
    correct = _same_label(body.label, row.top_label) if body.label is not None else bool(body.correct)
    verdict = FeedbackBase(
        request_id=body.request_id,
        item_index=body.item_index,
        label=body.label,
        correct=correct,
        experiment=row.experiment,
        arm=row.arm,
    )
    save_feedback(session=session, feedback=verdict)
    return FeedbackResponse(**verdict.model_dump(), answered_label=row.top_label, model=row.model, version=row.version)


async def _flush(plane: DataPlane | None) -> None:
    if plane is not None:
        await run_in_threadpool(plane.log_writer.flush)


@router.post("/feedback", response_model=FeedbackResponse, status_code=201)
async def feedback(plane: DataPlaneDep, body: FeedbackRequest) -> FeedbackResponse:
    """Say whether an answer was right: stored against its inference-log record (a repeat replaces it)."""
    stored = await in_session(plane, lambda s: _record(body, s))
    if stored is None:  # answered moments ago: its record may still wait in this replica's log buffer
        await _flush(plane)
        stored = await in_session(plane, lambda s: _record(body, s))
    if stored is None:
        raise NotFound(f"no logged answer for request {body.request_id!r} image {body.item_index}")
    return stored
