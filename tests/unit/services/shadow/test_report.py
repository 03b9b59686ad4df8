"""shadow_agreement over a migrated SQLite inference log: shadow rows joined with their production rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import InferenceLogCreate
from services.db.logs import insert_inference_logs
from services.shadow.report import as_markdown, shadow_agreement

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def row(request: str, *, shadow: bool, label: str | None, index: int = 0, **extra: Any) -> InferenceLogCreate:
    fields: dict[str, Any] = {
        "request_id": request,
        "route": "/api/v1/classify",
        "item_index": index,
        "model": "classifier",
        "version": "v9" if shadow else "v2",
        "status": 200,
        "latency_ms": 1.0,
        "top_label": label,
        "image_sha256": f"{request}-{index}",
        "shadow": shadow,
        "created_at": T0,
    }
    return InferenceLogCreate(**{**fields, **extra})


def store(engine: Engine, rows: list[InferenceLogCreate]) -> None:
    with Session(engine) as session:
        insert_inference_logs(session=session, records=rows)
        session.commit()


def test_agreement_is_read_from_the_shadow_rows_and_their_production_rows(engine: Engine) -> None:
    store(
        engine,
        [
            row("a", shadow=False, label="cat"),
            row("a", shadow=True, label="cat", agreement=1.0),
            row("b", shadow=False, label="cat"),
            row("b", shadow=True, label="dog", agreement=0.0),
            row("b", shadow=False, label="cat"),  # the caller sent request id b twice: counted once all the same
            row("c", shadow=True, label=None, status=503, error_type="model-unavailable"),  # failed, no production
            row("d", shadow=True, label="cat", agreement=1.0, version="v8"),  # another shadow version
            row("e", shadow=True, label="cat", agreement=1.0, model="detector"),  # another model
        ],
    )
    report = shadow_agreement(engine, model="classifier", version="v9")
    assert report == {
        "model": "classifier",
        "version": "v9",
        "since": None,
        "measure": "top1",
        "items": 3,
        "errors": 1,
        "error_rate": 1 / 3,
        "compared": 2,
        "agreement": 0.5,
        "paired": 2,
        "top_label_agreement": 0.5,
    }


def test_a_production_row_of_another_image_or_position_is_not_a_pair(engine: Engine) -> None:
    store(
        engine,
        [
            row("a", shadow=True, label="cat", agreement=1.0, index=1),
            row("a", shadow=False, label="cat", index=0),
            row("a", shadow=False, label="cat", index=1, image_sha256="other"),
        ],
    )
    report = shadow_agreement(engine, model="classifier", version="v9")
    assert (report["items"], report["paired"], report["top_label_agreement"]) == (1, 0, None)


def test_since_keeps_the_recent_rows_only(engine: Engine) -> None:
    store(
        engine,
        [
            row("old", shadow=True, label="cat", agreement=0.0, created_at=T0 - timedelta(days=2)),
            row("new", shadow=True, label="cat", agreement=1.0),
        ],
    )
    report = shadow_agreement(engine, model="classifier", version="v9", since=T0 - timedelta(days=1))
    assert (report["items"], report["agreement"], report["since"]) == (1, 1.0, (T0 - timedelta(days=1)).isoformat())


def test_no_shadow_rows_is_an_empty_report(engine: Engine) -> None:
    report = shadow_agreement(engine, model="detector", version="v3")
    assert report["measure"] == "box_match_iou50"
    assert (report["items"], report["error_rate"], report["agreement"], report["top_label_agreement"]) == (
        0,
        None,
        None,
        None,
    )


def test_the_report_reads_as_a_markdown_table(engine: Engine) -> None:
    store(engine, [row("a", shadow=False, label="cat"), row("a", shadow=True, label="cat", agreement=1.0)])
    text = as_markdown(shadow_agreement(engine, model="classifier", version="v9", since=T0))
    assert "| agreement (top1), over 1 compared | 1.0000 |" in text
    assert "| images mirrored (errors) | 1 (0) |" in text and "2026-12-01" in text
    assert "| since | the first row |" in as_markdown(shadow_agreement(engine, model="detector", version="v3"))
