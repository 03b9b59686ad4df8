"""python -m services.experiments: create, list, pause, resume, stop, weights, show."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.experiments.__main__ import main, parse_arm, parse_time, parse_weight
from services.experiments.assignment import Arm
from tests.unit.services.experiments.helpers import log_rows


def run(engine: Engine, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), engine=engine)
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_pause_resume_weights_stop(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        engine,
        capsys,
        *("create", "--model", "classifier", "--id", "ab1", "--arm", "control=v1:50", "--arm", "candidate=v2"),
        *("--salt", "s1", "--start", "2026-12-01T00:00", "--end", "2027-01-01T00:00Z"),
    )
    assert code == 0 and out.startswith("ab1\tclassifier\tactive\tcontrol=v1:50, candidate=v2:1\t2026-12-01")
    for command, status in (("pause", "paused"), ("resume", "active")):
        code, out, _ = run(engine, capsys, command, "ab1")
        assert code == 0 and f"\t{status}\t" in out
    code, out, _ = run(engine, capsys, "weights", "ab1", "candidate=50")
    assert code == 0 and "candidate=v2:50" in out
    code, out, _ = run(engine, capsys, "list", "--status", "active")
    assert code == 0 and out.startswith("ab1\t")
    code, out, _ = run(engine, capsys, "stop", "ab1")
    assert code == 0 and "\tstopped\t" in out
    code, _, err = run(engine, capsys, "resume", "ab1")
    assert code == 2 and "has stopped" in err


def test_create_with_defaults_picks_an_id_and_a_salt(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(engine, capsys, "create", "--model", "detector", "--arm", "a=v1", "--arm", "b=v1")
    assert code == 0 and out.startswith("detector-")
    code, out, _ = run(engine, capsys, "list")
    assert out.count("\n") == 1


def test_show_prints_the_experiment_and_its_analysis(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    run(engine, capsys, "create", "--model", "classifier", "--id", "ab1", "--arm", "a=v1", "--arm", "b=v2")
    log_rows(engine, {"request_id": "r1", "experiment": "ab1", "arm": "b"})
    code, out, _ = run(engine, capsys, "show", "ab1")
    body = json.loads(out)
    assert (
        code == 0
        and body["experiment"]["id"] == "ab1"
        and [a["name"] for a in body["experiment"]["arms"]]
        == [
            "a",
            "b",
        ]
    )
    assert '"b"' in json.dumps(body["analysis"])


def test_unknown_experiment_and_bad_definitions_fail(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(engine, capsys, "pause", "nope")
    assert code == 1 and "no experiment 'nope'" in err
    code, _, err = run(engine, capsys, "create", "--model", "classifier", "--arm", "a=v1")
    assert code == 2 and "two or more arms" in err


def test_argument_parsers() -> None:
    assert parse_arm("x=v3:2.5") == Arm("x", "v3", 2.5)
    assert parse_weight("x=0") == ("x", 0.0)
    assert parse_time("2026-12-01T00:00").tzinfo is not None
    for parser, raw in ((parse_arm, "x"), (parse_arm, "x=v1:heavy"), (parse_weight, "x=many"), (parse_time, "soon")):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected|must be"):
            parser(raw)


def test_the_configured_database_is_used(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.db.__main__ import main as db_main

    assert db_main(["migrate"]) == 0
    assert main(["create", "--model", "classifier", "--id", "cfg", "--arm", "a=v1", "--arm", "b=v2"]) == 0
    assert "cfg\t" in capsys.readouterr().out
