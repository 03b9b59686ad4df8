"""benchmarks/peers.py's further rounds: the goals' servers started once, side by side, measured in turn per round."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peers, peers_servers
from benchmarks.loopback import Target


def test_the_goals_servers_start_once_and_each_round_alternates_which_side_goes_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events: list[tuple[str, str]] = []

    @contextmanager
    def launch(target: Target, workdir: Path, port: int, timeout: float) -> Iterator[tuple[str, Any]]:
        events.append(("start", target.name))
        yield f"http://127.0.0.1:{port}", target.name
        events.append(("stop", target.name))

    def measure(url: str, root: Any, route: str, path: str, jpeg: bytes, c: int, plan: Any) -> dict[str, Any]:
        events.append(("measure", f"{root} {route} c={c}"))
        return {"throughput": 1.0}

    monkeypatch.setattr(peers, "launch", launch)
    monkeypatch.setattr(peers, "settle", lambda root: 0.5)
    monkeypatch.setattr(peers, "measure", measure)
    files = {"int8": tmp_path / "model.int8.onnx", "fp32": tmp_path / "model.onnx"}
    monkeypatch.setattr(peers_servers, "served_files", lambda name: (files, "int8"))  # no model store needed
    only = ["product", "ort-int8", "ort-fp32", "product-no-batching"]
    plan = peers.parse_args(["--rounds", "3", "--only", *only, "--port", "9100"])

    repeats = peers.side_by_side(plan, tmp_path, {"classify": b"", "detect": b""})

    # Started once each (the goals' servers only: not ort-fp32), all up before the first measurement, stopped after
    # the last. Each route and concurrency on every side back to back: the product last in round 2 (even), first in
    # round 3; batching off at the load concurrencies only, as in round 1.
    assert events[:3] == [("start", "product"), ("start", "ort-int8"), ("start", "product-no-batching")]
    assert sorted(events[-3:]) == [("stop", "ort-int8"), ("stop", "product"), ("stop", "product-no-batching")]
    measured = [what for kind, what in events if kind == "measure"]
    off = "product-no-batching"
    assert measured == [
        *["ort-int8 classify c=1", "product classify c=1"],
        *[f"{off} classify c=16", "ort-int8 classify c=16", "product classify c=16"],
        *[f"{off} classify c=32", "product classify c=32"],
        *["product detect c=1", f"{off} detect c=16", "product detect c=16"],
        *[f"{off} detect c=32", "product detect c=32"],
        *["product classify c=1", "ort-int8 classify c=1"],
        *["product classify c=16", "ort-int8 classify c=16", f"{off} classify c=16"],
        *["product classify c=32", f"{off} classify c=32"],
        *["product detect c=1", "product detect c=16", f"{off} detect c=16"],
        *["product detect c=32", f"{off} detect c=32"],
    ]
    assert [list(one) for one in repeats] == [[off, "ort-int8", "product"], ["product", "ort-int8", off]]
    assert repeats[0]["product"]["settled_after_s"] == 0.5
    assert repeats[0]["product"]["routes"]["classify"] == {c: {"throughput": 1.0} for c in ("1", "16", "32")}
