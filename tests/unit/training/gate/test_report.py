"""The report's Markdown and JSON, and the extension hook sections plug into."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.unit.training.gate.fakes import version
from training.gate.checks import decide
from training.gate.config import ModelGate
from training.gate.evaluation import HeldOut
from training.gate.report import GateRun, ReportSection, render, write
from training.gate.results import ParityResult

GATE = ModelGate(name="classifier", metric="top1", artifacts="lite0_tiny_imagenet200")


def _run(candidate_top1: float) -> GateRun:
    candidate = version(
        "v3", top1={"fp32": candidate_top1, "int8": 0.745}, parity=ParityResult(None, "no weights here")
    )
    production = version("v2", stage="production", parity=ParityResult(1e-5, "timm", 8))
    checks = decide(candidate, production, "top1", GATE)
    data = HeldOut("classification", [Path("a.png")] * 3, np.zeros(3, dtype=int), ["zero"])
    decision = "refused" if any(not c.passed for c in checks) else "promoted"
    return GateRun(GATE, candidate, production, data, checks, decision, {"commit": "abc"})


def test_a_refusal_names_each_failed_check_with_its_numbers() -> None:
    markdown, document = render(_run(0.70))
    assert markdown.startswith("# Release gate: classifier:v3 against classifier:v2 (production)")
    assert "Decision: **REFUSED**: FAILED top1 drop (fp32): measured 5 points, allowed 0.5 points" in markdown
    assert "| top1 drop (fp32) | 5 | 0.5 | points | -4.5 | **FAIL** |" in markdown
    assert "## Ten worst classes (fp32, by top-1 accuracy)" in markdown and "goldfish 0.100 (n=50)" in markdown
    assert "| classifier:v3 | n/a | no weights here |" in markdown
    assert "- classifier:v3 (shadow): the v3 release\n- classifier:v2 (production): the v2 release" in markdown
    assert document["decision"] == "refused" and not document["passed"]
    assert document["failed"][0].startswith("FAILED top1 drop (fp32)")
    assert document["checks"][0]["margin"] == -4.5
    assert document["candidate"]["precisions"]["fp32"]["metrics"]["top1"] == 0.70


def test_a_promotion_and_an_extension_section(tmp_path: Path) -> None:
    def agreement(run: GateRun) -> ReportSection:
        return ReportSection("Shadow agreement", f"{run.candidate.tag}: 99 %", "shadow", {"agreement": 0.99})

    path = write(_run(0.75), tmp_path / "release", [agreement, lambda run: None])
    assert path == tmp_path / "release" / "classifier-v3.md"
    markdown = path.read_text()
    assert "Decision: **PROMOTED**\n" in markdown and "## Shadow agreement\n\nclassifier:v3: 99 %" in markdown
    document = json.loads(path.with_suffix(".json").read_text())
    assert document["shadow"] == {"agreement": 0.99} and document["passed"]
