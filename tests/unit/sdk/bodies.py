"""Response bodies as the server sends them (validated against services/http/schemas.py in test_models.py)."""

from __future__ import annotations

from typing import Any

MODEL = {"name": "detector", "version": "v1", "precision": "fp32"}
IMAGE = {"width": 64, "height": 48, "format": "PNG", "sha256": "ab" * 32, "bytes": 1234}
PROBLEM_BASE = "urn:cv-api:problem:"


def classify() -> dict[str, Any]:
    return {
        "predictions": [
            {"class_id": 281, "label": "tabby", "label_id": "n02123045", "score": 0.8},
            {"class_id": 282, "label": "tiger cat", "score": 0.1},
        ],
        "request_id": "req-1",
        "model": {**MODEL, "name": "classifier"},
        "experiment": "classifier-ab",
        "arm": "candidate",
        "image": IMAGE,
        "cached": False,
        "timings_ms": {"decode": 1.0, "total": 5.0},
    }


def detect() -> dict[str, Any]:
    return {
        "detections": [
            {"box": {"x1": 10.0, "y1": 10.0, "x2": 40.0, "y2": 30.0}, "class_id": 0, "label": "person", "score": 0.9}
        ],
        "request_id": "req-2",
        "model": MODEL,
        "experiment": None,
        "arm": None,
        "image": IMAGE,
        "cached": True,
        "timings_ms": {"total": 7.5},
    }


def search() -> dict[str, Any]:
    return {
        "request_id": "req-3",
        "model": {**MODEL, "name": "embedder"},
        "image": IMAGE,
        "results": [{"id": "g1", "score": 0.97, "metadata": {"kind": "rocket"}}],
        "gallery_size": 1,
        "query_expansion": 0,
        "timings_ms": {"total": 3.0},
    }


def gallery_item() -> dict[str, Any]:
    return {"id": "g1", "model": {**MODEL, "name": "embedder"}, "metadata": {"kind": "rocket"}}


def problem(status: int, slug: str, detail: str = "went wrong", request_id: str | None = "req-9") -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + slug,
        "title": slug.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": "/api/v1/classify",
        "request_id": request_id,
    }


def batch() -> dict[str, Any]:
    return {
        "request_id": "req-4",
        "task": "classify",
        "count": 2,
        "succeeded": 1,
        "items": [
            {"index": 0, "filename": "image-0", "status": 200, "result": classify(), "error": None},
            {"index": 1, "filename": "image-1", "status": 400, "result": None, "error": problem(400, "invalid-image")},
        ],
        "timings_ms": {"total": 9.0},
    }


def job(status: str = "queued", *, items: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    pending = 0 if status in {"succeeded", "partial", "failed", "cancelled"} else 2
    return {
        "id": "job-123456789",
        "location": "/api/v1/jobs/job-123456789",
        "task": "detect",
        "status": status,
        "request_id": "req-5",
        "item_count": 2,
        "counts": {"pending": pending, "succeeded": 2 - pending, "failed": 0, "cancelled": 0},
        "progress": (2 - pending) / 2,
        "created_at": "2024-05-01T12:00:00Z",
        "started_at": None,
        "finished_at": None,
        "items": items or [],
        "next_offset": None,
        **extra,
    }


def job_item(index: int) -> dict[str, Any]:
    return {
        "index": index,
        "filename": f"image-{index}",
        "status": "succeeded",
        "http_status": 200,
        "result": detect(),
        "error": None,
    }


def models() -> dict[str, Any]:
    return {
        "models": [
            {
                "model": "classifier",
                "status": "ok",
                "default_version": "v1",
                "versions": [
                    {
                        "version": "v1",
                        "stage": "production",
                        "state": "ok",
                        "precisions": {"fp32": "loaded"},
                        "errors": {},
                        "metadata": {"num_labels": 1000},
                    }
                ],
            },
            {"model": "detector", "status": "down", "error": "unreachable", "versions": []},
        ]
    }


def health(status: str = "ok") -> dict[str, Any]:
    return {
        "status": status,
        "live": True,
        "models": {"classifier": status},
        "data": {"cache": {"status": "ok", "backend": "memory", "entries": 3}, "jobs": {"status": "ok", "workers": 1}},
    }


def experiment(analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {
        "id": "clf-ab",
        "model": "classifier",
        "status": "active",
        "running": True,
        "arms": [
            {"name": "control", "version": "v1", "weight": 50.0},
            {"name": "candidate", "version": "v2", "weight": 50.0},
        ],
        "start_at": None,
        "end_at": "2026-12-31T00:00:00Z",
        "created_at": "2026-12-05T00:00:00Z",
        "updated_at": "2026-12-05T00:00:00Z",
    }
    return body if analysis is None else body | {"analysis": analysis}


def feedback() -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "item_index": 0,
        "label": "tabby",
        "correct": True,
        "answered_label": "tabby",
        "model": "classifier",
        "version": "v2",
        "experiment": "clf-ab",
        "arm": "candidate",
    }


def drift() -> dict[str, Any]:
    return {
        "model": "classifier",
        "version": "v2",
        "window": 1000,
        "n": 800,
        "verdict": "drift",
        "alpha": 0.01,
        "tests": [
            {
                "name": "ks",
                "feature": "brightness",
                "statistic": 0.4,
                "p_value": 1e-9,
                "adjusted_p_value": 1e-8,
                "drift": True,
            },
            {
                "name": "psi",
                "feature": "labels",
                "statistic": 0.1,
                "p_value": None,
                "adjusted_p_value": None,
                "drift": False,
            },
        ],
        "checked_at": "2026-12-05T01:00:00Z",
    }
