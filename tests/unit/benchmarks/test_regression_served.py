"""benchmarks/regression_served.py with the HTTP load faked: the interleaving order, CPU per request, scoring."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import regression_served as served
from tests.integration.server import Server


def _server(name: str) -> Server:
    process = SimpleNamespace(pid=os.getpid())
    return Server(url=f"http://{name}", process=process, log_path=Path(name))  # type: ignore[arg-type]


def _fake_load(calls: list[tuple[str, str, int, int]]) -> Any:
    async def load(url: str, route: str, jpeg: bytes, concurrency: int, total: int) -> dict[str, Any]:
        calls.append((url.removeprefix("http://"), route, concurrency, total))
        return {"ok": total, "statuses": {"200": total}, "throughput": 1.0, "p50": 1.0, "stages": {}}

    return load


def test_rounds_alternate_the_sides_and_flip_the_order_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int, int]] = []
    monkeypatch.setattr(served, "load_once", _fake_load(calls))
    plan = SimpleNamespace(rounds=2, sequential=3, requests=7, warmup=2)
    jpegs = {"chelsea": b"c", "astronaut": b"a"}
    out = served.load_rounds({"baseline": _server("baseline"), "tree": _server("tree")}, jpegs, plan)
    warmup, measured = calls[:8], calls[8:]
    assert {c[3] for c in warmup} == {2} and {c[0] for c in warmup} == {"baseline", "tree"}
    assert [c[0] for c in measured] == ["baseline", "tree"] * 4 + ["tree", "baseline"] * 4
    assert [(c[1], c[2], c[3]) for c in measured[:4:2]] == [("classify", 1, 3), ("classify", 16, 7)]
    assert set(out) == {"baseline", "tree"} and len(out["tree"]["detect"]["16"]) == 2
    assert "stages" not in out["tree"]["detect"]["16"][0] and "cpu_ms_per_request" in out["tree"]["detect"]["16"][0]


def test_cpu_seconds_counts_a_process_and_its_children() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        assert served.cpu_seconds(os.getpid()) > 0.0
        assert served.cpu_seconds(2**22 + 12345) == 0.0  # no such process
    finally:
        child.kill()
        child.wait()


def test_one_round_divides_the_server_cpu_by_the_successful_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([10.0, 10.5])
    monkeypatch.setattr(served, "cpu_seconds", lambda pid: next(readings))
    monkeypatch.setattr(served, "load_once", _fake_load([]))
    assert served.one_round(_server("tree"), "detect", b"a", 16, 50)["cpu_ms_per_request"] == pytest.approx(10.0)


def test_top1_reads_the_wnid_of_the_first_prediction() -> None:
    body = {"predictions": [{"label": "goldfish", "label_id": "n01443537"}]}
    assert served._top1(body, "n01443537") and not served._top1(body, "n01629819")
    assert not served._top1(None, "n01443537") and not served._top1({"predictions": []}, "n01443537")


def test_accuracy_scores_top1_and_map_through_the_served_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    box = {"class_id": 0, "score": 0.9, "box": {"x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 50.0}}

    async def post_all(url: str, images: list[bytes], fields: dict[str, str], concurrency: int = 4) -> list[Any]:
        if url.endswith("/classify"):
            return [{"predictions": [{"label_id": "n1"}]}, {"predictions": [{"label_id": "n1"}]}, None]
        return [{"detections": [box]}]

    monkeypatch.setattr(served, "_post_all", post_all)
    image = tmp_path / "1.jpg"
    image.write_bytes(b"jpeg")
    annotation = {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0}
    truth = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 100}],
        "annotations": [annotation],
        "categories": [{"id": 0, "name": "0"}],
    }
    result = served.accuracy(_server("tree"), [(b"a", "n1"), (b"b", "n2"), (b"c", "n1")], (truth, [image]))
    assert result["classifier_top1"] == pytest.approx(100 / 3)
    assert result["detector_map50_95"] == pytest.approx(100.0)
    assert result["failed_requests"] == 1 and result["images"] == {"classifier": 3, "detector": 1}
