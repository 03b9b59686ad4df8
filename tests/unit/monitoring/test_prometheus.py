"""Prometheus' configuration, alert rules and their promtool unit tests; Alertmanager's configuration."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.models.catalogue import CATALOGUE
from tests.unit.monitoring.conftest import MONITORING, PROMETHEUS_DIR, REPO

RUNBOOK = REPO / "docs" / "runbook.md"


def _run(*argv: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_checks_the_configuration_and_the_rules_it_loads(promtool: str) -> None:
    output = _run(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS" in output and "rules found" in output  # the rule_files glob matched


def test_promtool_checks_every_rule_file(promtool: str) -> None:
    files = sorted(str(p.relative_to(PROMETHEUS_DIR)) for p in (PROMETHEUS_DIR / "rules").glob("*.yml"))
    assert files
    _run(promtool, "check", "rules", *files)


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    files = sorted(str(p.relative_to(PROMETHEUS_DIR)) for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert files
    output = _run(promtool, "test", "rules", *files)
    assert "FAILED" not in output


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (PROMETHEUS_DIR / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - fired == set(), "alerts never seen firing"
    assert alerts - quiet == set(), "alerts never seen staying quiet"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    anchors = {_github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (REPO / path) == RUNBOOK, name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section '### {name}' in docs/runbook.md"


def test_prometheus_scrapes_every_serving_process_of_compose() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    hosts = {
        target.rpartition(":")[0]
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    compose = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())["services"]
    serving = {"traefik", "auth", *(m.name for m in CATALOGUE)} | {s for s in compose if re.fullmatch(r"api-\d+", s)}
    assert serving <= set(compose)
    assert serving - hosts == set()


def test_amtool_checks_the_alertmanager_configuration(amtool: str) -> None:
    _run(amtool, "check-config", "alertmanager/alertmanager.yml", cwd=MONITORING)
