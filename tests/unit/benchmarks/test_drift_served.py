"""benchmarks/drift_served.py: windows of shifted images sent, the drift route read, the report written."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks import drift_served


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_each_window_sends_fresh_images_and_reads_the_drift_of_that_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [(_jpeg(40 + i), {"filename": f"val_{2 * i + 1}.JPEG"}) for i in range(6)]
    monkeypatch.setattr(drift_served, "tiny_imagenet_split", lambda settings, held_out: iter(images))
    sent: list[bytes] = []
    windows: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/classify":
            sent.append(request.content)
            return httpx.Response(200, json={})
        windows.append(int(request.url.params["window"]))
        verdict = "drift" if len(windows) == 2 else "no_drift"
        test = {"name": "ks", "feature": "brightness", "drift": verdict == "drift"}
        return httpx.Response(200, json={"n": windows[-1], "verdict": verdict, "tests": [test]})

    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(drift_served.httpx, "Client", client)
    out = tmp_path / "report.md"
    argv = ["--window", "3", "--sequence", "none,darkened", "--threads", "1", "--out", str(out)]
    assert drift_served.main(argv) == 0
    assert windows == [3, 3] and len(sent) == 6 and len(set(sent)) == 6  # no image twice
    report = out.read_text()
    assert "| none | 3 | 3 | 3 | **no_drift** | none |" in report
    assert "| darkened | 3 | 3 | 3 | **drift** | ks:brightness |" in report
