"""Metric exposition in one process and in Prometheus' multiprocess mode."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST

from services.metrics import FALLBACKS, HTTP_REQUESTS, render_metrics


def test_render_metrics_single_process_lists_our_metrics() -> None:
    HTTP_REQUESTS.labels("/api/v1/classify", "POST", "200").inc()
    body, content_type = render_metrics(None)
    assert content_type == CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'cv_http_requests_total{method="POST",route="/api/v1/classify",status="200"}' in text
    assert "cv_model_fallbacks_total" in text


def test_render_metrics_multiprocess_reads_the_directory(tmp_path: Path) -> None:
    FALLBACKS.labels("metrics-test", "v1/int8", "v1/fp32").inc()  # not written to tmp_path in single-process mode
    body, content_type = render_metrics(str(tmp_path))
    assert content_type == CONTENT_TYPE_LATEST
    assert b"metrics-test" not in body
