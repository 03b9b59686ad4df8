"""benchmarks/overload_edge.py's bookkeeping and report on synthetic figures (the load itself needs the topology)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks import overload, overload_edge
from tests.unit.benchmarks.test_overload import phase_against


def test_a_phase_counts_the_gateways_429_apart_and_sends_the_key() -> None:
    seen: list[str | None] = []

    async def classify(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.headers.get("Authorization"))
        if len(seen) % 3 == 1:
            return web.json_response({"ok": True})
        if len(seen) % 3 == 2:
            headers = {"Retry-After": "1", "x-problem-type": "rate-limited"}
            return web.Response(status=429, body=b"{}", content_type="application/problem+json", headers=headers)
        return web.Response(status=429, body=b"no")  # a bare 429: no problem+json, no Retry-After

    result = asyncio.run(phase_against(classify, 1, False, {"Authorization": "K"}))
    assert set(seen) == {"K"}
    assert result["answered_ms"] and result["limited_ms"] and not result["refused_ms"]
    assert result["malformed_refusals"]["content-type"] >= 1 and result["malformed_refusals"]["retry-after"] >= 1
    merged = overload._merge([result])
    assert merged["limited"] == len(result["limited_ms"]) and merged["refused"] == 0


def _phase(concurrency: int, answered: int, refused: int = 0, limited: int = 0) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "throughput": answered / 10,
        "answered": answered,
        "latency_ms": {"p50": 100.0, "p99": 900.0, "max": 950.0},
        "refused": refused,
        "refusal_ms": {"p50": 40.0, "p99": 70.0, "max": 80.0},
        "limited": limited,
        "limited_ms": {"p50": 3.0, "p99": 6.0, "max": 7.0},
        "statuses": {"200": answered, "503 overloaded": refused, "429 rate-limited": limited, "502": 1},
        "malformed_refusals": {},
        "server_counts": {"status 200": float(answered), "status 503": float(refused)},
        "server_ms": {"200": {"p99": 800.0}, "503": {"p99": 9.0}},
        "server_cpu_cores": 1.4,
    }


def _results() -> dict[str, Any]:
    return {
        "phases": {"16": _phase(16, 700), "256": _phase(256, 630, refused=900, limited=5)},
        "error_lines": {"api-1": 0},
        "machine": {"nproc": 2},
        "plan": {"seconds": 20.0, "rounds": 1, "warmup": 8.0, "tier": "enterprise", "concurrencies": [16, 256]},
        "notes": ["a note"],
    }


def test_render_reports_the_ratio_refusals_limits_other_statuses_and_the_replicas_counts() -> None:
    report = overload_edge.render(_results())
    assert "| 256 | 63.0 | 90% | 100.0 | 900.0 | 950.0 | 900 | 40 / 70 | 5 | 3 / 6 | 502: 1 | 0 | 630 / 900 |" in report
    assert "{16: 700, 256: 630} answered against {16: 700.0, 256: 630.0}" in report
    assert report.rstrip().endswith("- a note")


def test_render_from_a_saved_run_adds_notes(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(_results()))
    out = tmp_path / "overload_edge.md"
    assert overload_edge.main(["--render", str(saved), "--note", "another", "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["notes"] == ["a note", "another"]
    assert "- a note\n- another" in out.read_text()
