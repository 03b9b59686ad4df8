"""benchmarks/overload.py's bookkeeping and its report, on synthetic figures (the load itself needs a server)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchmarks import overload
from benchmarks.overload_report import render


def _round(answered: list[float], refused: list[float], seconds: float, concurrency: int = 16) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "answered_ms": answered,
        "refused_ms": refused,
        "statuses": Counter({"200": len(answered), "503 overloaded": len(refused)}),
        "malformed_refusals": Counter(),
    }


def test_merge_sums_rounds_and_keeps_each_rounds_throughput() -> None:
    merged = overload._merge([_round([100.0] * 10, [], 2.0), _round([300.0] * 30, [5.0], 2.0)])
    assert merged["answered"] == 40 and merged["throughput"] == 10.0
    assert merged["throughput_by_round"] == [5.0, 15.0]
    assert merged["refused"] == 1 and merged["refusal_ms"]["max"] == 5.0
    assert merged["statuses"] == {"200": 40, "503 overloaded": 1}


def test_server_times_reads_the_access_log_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    before = json.dumps({"message": "request", "route": overload.PATH, "status": 200, "duration_ms": 999.0}) + "\n"
    lines = [
        json.dumps({"message": "request", "route": overload.PATH, "status": 200, "duration_ms": 12.0}),
        json.dumps({"message": "request", "route": overload.PATH, "status": 503, "duration_ms": 0.5}),
        json.dumps({"message": "request", "route": "/api/v1/health", "status": 200, "duration_ms": 1.0}),
        "2026-12-05T02:00:21+0000 [INFO] [entry_service:api:1] not json",
    ]
    log.write_text(before + "\n".join(lines) + "\n")
    assert overload._server_times(log, len(before)) == {"200": [12.0], "503": [0.5]}


def test_server_counts_reads_classify_answers_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(
        [
            'cv_http_requests_total{method="POST",route="/api/v1/classify",status="200"} 40.0',
            'cv_http_requests_total{method="POST",route="/api/v1/classify",status="503"} 7.0',
            'cv_http_requests_total{method="GET",route="/api/v1/health",status="200"} 3.0',
            'cv_admission_refused_total{reason="full",route="/api/v1/classify"} 6.0',
            'cv_admission_refused_total{reason="timeout",route="/api/v1/classify"} 1.0',
        ]
    )

    class Answer:
        def __init__(self) -> None:
            self.text = text

    monkeypatch.setattr(overload.httpx, "get", lambda *a, **k: Answer())
    assert overload._server_counts("http://x") == {
        "status 200": 40.0,
        "status 503": 7.0,
        "refused full": 6.0,
        "refused timeout": 1.0,
    }


async def phase_against(
    classify: Callable[[web.Request], Awaitable[web.Response]],
    concurrency: int,
    honour_retry_after: bool,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A short ``overload._phase`` against an aiohttp server answering the classify path with ``classify``."""
    app = web.Application()
    app.router.add_post(overload.PATH, classify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await overload._phase(f"http://127.0.0.1:{port}", b"jpeg", concurrency, 0.3, honour_retry_after, headers)
    finally:
        await runner.cleanup()


def test_a_phase_counts_answers_refusals_and_malformed_refusals() -> None:
    calls = {"n": 0}

    async def classify(request: web.Request) -> web.Response:
        await request.read()
        calls["n"] += 1
        if calls["n"] % 2:
            return web.json_response({"ok": True})
        headers = {"Retry-After": "1", "x-problem-type": "overloaded"}
        return web.Response(status=503, body=b"{}", content_type="application/problem+json", headers=headers)

    result = asyncio.run(phase_against(classify, 2, True))
    assert result["answered_ms"] and result["refused_ms"]
    assert set(result["statuses"]) == {"200", "503 overloaded"}
    assert not result["malformed_refusals"]


def _phase(concurrency: int, throughput: float, refused: int = 0) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "throughput": throughput,
        "throughput_by_round": [throughput, throughput],
        "latency_ms": {"p50": 100.0, "p99": 200.0, "max": 250.0},
        "refused": refused,
        "refusal_ms": {"p50": 1.0, "p99": 9.0, "max": 12.0},
        "statuses": {"200": 10, "503 overloaded": refused, "503 model-unavailable": 2},
        "server_counts": {"status 200": 10.0, "status 503": float(refused)},
        "server_ms": {"200": {"p99": 190.0}, "503": {"p99": 3.0}},
        "server_cpu_cores": 1.5,
    }


def test_render_reports_ratios_refusals_other_errors_and_the_batching_gain() -> None:
    results = {
        "machine": {"nproc": 2},
        "plan": {"seconds": "8", "out": "x"},
        "admission on": {16: _phase(16, 100.0), 256: _phase(256, 90.0, refused=500), "server_error_lines": 0},
        "admission off": {16: _phase(16, 100.0), 32: _phase(32, 110.0), "server_error_lines": 3},
        "batching off": {16: _phase(16, 80.0), 32: _phase(32, 88.0), "server_error_lines": 0},
    }
    report = render(results)
    assert "| admission on | 256 | 90.0 | 90% (90%, 90%) |" in report
    assert "| 500 | 1.0 | 9.0 | 3.0 | 190.0 | 2 |" in report  # refusals, then 2 model-unavailable as other errors
    assert "| 16 | 100.0 | 80.0 | +25% |" in report
    assert "| 32 | 110.0 | 88.0 | +25% |" in report


def test_parse_args_defaults() -> None:
    plan = overload.parse_args([])
    assert plan.concurrencies == [16, 32, 256] and plan.rounds == 2
    assert plan.servers == ["admission on", "admission off", "batching off"]
