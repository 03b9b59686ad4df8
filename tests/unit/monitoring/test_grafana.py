"""Grafana's provisioning and dashboards: valid JSON, datasources that resolve, queries that parse.

That every query names metrics the services really export is checked against a live scrape in
tests/integration/monitoring/test_metric_names.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.monitoring.conftest import MONITORING
from tests.unit.monitoring.queries import DASHBOARDS, dashboard_queries, metric_names, panels

PROVISIONING = MONITORING / "grafana" / "provisioning"


def _datasource_uids() -> dict[str, str]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def test_the_prometheus_datasource_is_provisioned_at_the_compose_address() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert (source["uid"], source["type"], source["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")


def test_the_dashboard_provider_loads_the_dashboards_folder() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_there_are_dashboards_with_unique_uids() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) >= 2 and len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_and_query_names_the_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    sources = _datasource_uids()
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    for panel in panels(dashboard):
        for ref in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
            if panel["type"] == "row" and ref is None:
                continue
            assert ref is not None, f"{panel['title']}: no datasource (Grafana would pick the default)"
            assert sources.get(ref["uid"]) == ref["type"], f"{panel['title']}: datasource {ref} is not provisioned"
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']}: no query"


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule would be: a typo in PromQL fails here, not in a browser."""
    queries = [expr for path in DASHBOARDS for _, expr in dashboard_queries(path)]
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(queries)]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (route) (rate(cv_http_requests_total{status=~"5.."}[5m]))', {"cv_http_requests_total"}),
        (
            "histogram_quantile(0.95, sum by (model, le) (rate(cv_inference_stage_seconds_bucket[5m])))",
            {"cv_inference_stage_seconds_bucket"},
        ),
        ("max(cv_jobs_active) > 0 and on () up == 1e3", {"cv_jobs_active", "up"}),
        ("a_sum / ignoring (x) b_count or c:rate5m", {"a_sum", "b_count", "c:rate5m"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
