"""Metric exposition in one process and in Prometheus' multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST

from services.metrics import FALLBACKS, HTTP_REQUESTS, render_metrics

REPO = Path(__file__).resolve().parents[3]


def test_render_metrics_single_process_lists_our_metrics() -> None:
    HTTP_REQUESTS.labels("/api/v1/classify", "POST", "200").inc()
    body, content_type = render_metrics(None)
    assert content_type == CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'cv_http_requests_total{method="POST",route="/api/v1/classify",status="200"}' in text
    assert "cv_model_fallbacks_total" in text


def _count_fallbacks_in_a_child(multiproc_dir: Path, model: str, times: int) -> None:
    """Another process, in Prometheus' multiprocess mode, counts ``times`` fallbacks into ``multiproc_dir``."""
    # The mode is chosen when prometheus_client is first imported, so it takes a process of its own.
    child = f"from services.metrics import FALLBACKS\nFALLBACKS.labels({model!r}, 'v1/int8', 'v1/fp32').inc({times})\n"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_render_metrics_multiprocess_reads_the_directory(tmp_path: Path) -> None:
    FALLBACKS.labels("metrics-test-here", "v1/int8", "v1/fp32").inc()  # this process is not in multiprocess mode
    _count_fallbacks_in_a_child(tmp_path, "metrics-test", 2)
    _count_fallbacks_in_a_child(tmp_path, "metrics-test", 3)  # a second process: its count adds to the first's
    body, content_type = render_metrics(str(tmp_path))
    assert content_type == CONTENT_TYPE_LATEST
    text = body.decode()
    assert "# TYPE cv_model_fallbacks_total counter" in text
    assert 'cv_model_fallbacks_total{from_version="v1/int8",model="metrics-test",to_version="v1/fp32"} 5.0' in text
    assert "metrics-test-here" not in text  # what this process counted lives only in its own registry
