"""benchmarks/peers_profile.py: shares of py-spy's collapsed stacks, waiting leaves left out."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.peers_profile import _frame, _out, gil_share, top_frames


def test_frame_keeps_the_function_and_the_file_name() -> None:
    assert _frame("run (/venv/onnxruntime/onnxruntime_inference_collection.py:220)") == (
        "run (onnxruntime_inference_collection.py)"
    )
    assert _frame("<native>") == "<native>"


def test_top_frames_shares_busy_samples_only(tmp_path: Path) -> None:
    raw = tmp_path / "1.txt"
    raw.write_text(
        "main (/a/service.py:1);infer (/a/worker.py:9);run (/o/session.py:5) 30\n"
        "main (/a/service.py:1);infer (/a/worker.py:9);resize (/p/Image.py:7) 10\n"
        "main (/a/service.py:1);select (/usr/lib/selectors.py:4) 60\n"
    )
    shares = top_frames(raw, limit=5)
    assert shares["busy_samples"] == 40
    assert shares["self"] == {"run (session.py)": 75.0, "resize (Image.py)": 25.0}
    assert shares["inclusive"]["infer (worker.py)"] == 100.0


def test_gil_share_is_the_samples_that_found_a_holder_over_the_samples_taken(tmp_path: Path) -> None:
    raw = tmp_path / "gil.txt"
    raw.write_text("run (a.py:1);send (b.py:2) 120\nrun (a.py:1);decode (c.py:3) 30\n\n")
    assert gil_share(raw, seconds=2.0, rate=100) == 0.75


def test_py_spy_samples_only_the_gil_holder_when_asked(tmp_path: Path) -> None:
    class Proc:
        pid = 42

    asked = _out(argparse.Namespace(gil=True, out=tmp_path), Proc())
    plain = _out(argparse.Namespace(gil=False, out=tmp_path), Proc())
    assert "--gil" in asked and "--gil" not in plain
    assert asked[-2:] == plain[-2:] == ["-o", str(tmp_path / "42.txt")]
