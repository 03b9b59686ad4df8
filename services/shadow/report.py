"""Agreement of a shadow version with production, read back from the inference log (for the release gate).

Each shadow row (``shadow`` true) carries the agreement the mirror computed with the answer the caller got; it is
joined with that answer's production row (same request id, item index, model and image) so the report also says
how many shadow rows still have their production row and how often the two rows' top labels agree. A request id
sent twice (a client's retry) makes no row count twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, exists, false, func, select, true

from kernel.db.tables import InferenceLog

TABLE = InferenceLog.metadata.tables[str(InferenceLog.__tablename__)]
MEASURES = {"classifier": "top1", "detector": "box_match_iou50", "embedder": "cosine"}


def shadow_agreement(engine: Engine, *, model: str, version: str, since: datetime | None = None) -> dict[str, Any]:
    """How ``model``'s shadow ``version`` agreed with production over the inference log since ``since``.

    Args:
        engine: The inference-log database.
        model: The model name (``classifier``, ``detector``, ``embedder``).
        version: The shadow version.
        since: Only rows made at or after this instant (timezone-aware); None: all of them.

    Returns:
        ``model``, ``version``, ``since`` (ISO 8601 or None), ``measure`` (``top1``, ``box_match_iou50`` or
        ``cosine``), ``items`` (shadow rows), ``errors`` (shadow rows that failed), ``error_rate``, ``compared``
        (rows with an agreement), ``agreement`` (their mean in [0, 1]; None when none), ``paired`` (shadow rows
        whose production row was found), ``top_label_agreement`` (share of pairs with both top labels set whose
        labels are equal: top-1 for the classifier, the best box's class for the detector; None when none).
    """
    shadow = TABLE.alias("shadow_row").c
    production = TABLE.alias("production_row").c
    # EXISTS rather than a join: a caller that sends a request id twice (a retry) must not count a row twice.
    same_item = and_(
        production.shadow == false(),
        production.request_id == shadow.request_id,
        production.item_index == shadow.item_index,
        production.model == shadow.model,
        production.image_sha256 == shadow.image_sha256,
    )
    paired = exists().where(same_item)
    labelled = and_(shadow.top_label.is_not(None), exists().where(same_item, production.top_label.is_not(None)))
    equal = exists().where(same_item, production.top_label == shadow.top_label)
    query = select(
        func.count(shadow.id),
        func.count(case((shadow.status >= 400, 1))),
        func.count(shadow.agreement),
        func.avg(shadow.agreement),
        func.count(case((paired, 1))),
        func.count(case((labelled, 1))),
        func.count(case((equal, 1))),
    ).where(shadow.shadow == true(), shadow.model == model, shadow.version == version)
    if since is not None:
        query = query.where(shadow.created_at >= since)
    with engine.connect() as connection:
        items, errors, compared, mean, paired, labelled, equal = connection.execute(query).one()
    return {
        "model": model,
        "version": version,
        "since": since.isoformat() if since is not None else None,
        "measure": MEASURES.get(model),
        "items": int(items),
        "errors": int(errors),
        "error_rate": errors / items if items else None,
        "compared": int(compared),
        "agreement": float(mean) if mean is not None else None,
        "paired": int(paired),
        "top_label_agreement": equal / labelled if labelled else None,
    }


def as_markdown(report: dict[str, Any]) -> str:
    """A :func:`shadow_agreement` report as a Markdown table (a section of the release gate's report)."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    rows = [
        ("model / shadow version", f"{report['model']} / {report['version']}"),
        ("since", report["since"] or "the first row"),
        ("images mirrored (errors)", f"{report['items']} ({report['errors']})"),
        (f"agreement ({report['measure']}), over {report['compared']} compared", number(report["agreement"])),
        (f"top-label agreement, over {report['paired']} paired with production", number(report["top_label_agreement"])),
    ]
    return "\n".join(["| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])
