"""The PromQL of monitoring/: every query of the dashboards and rules, and the metric names each one reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.unit.monitoring.conftest import MONITORING, PROMETHEUS_DIR

DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (not functions, aggregations, labels, keywords or numbers)."""
    text = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING, _NUMBERS):
        text = pattern.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        followed_by_call = text[match.end() :].lstrip().startswith("(")
        if not followed_by_call and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every query of one dashboard."""
    dashboard = json.loads(path.read_text())
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def rule_queries() -> list[tuple[str, str]]:
    """``(alert or record name, expr)`` for every rule of monitoring/prometheus/rules/."""
    found: list[tuple[str, str]] = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend((rule.get("alert") or rule["record"], rule["expr"]) for rule in group["rules"])
    return found
