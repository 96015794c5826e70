"""The Grafana dashboard and the alert rules in deploy/ query metrics this service exports,
and the dashboard's queries are PromQL that Prometheus accepts."""

import json
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests.api.conftest import auth
from tests.promtool import run_promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "jobledger.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bjobledger_[a-z_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
PANELS = (
    "Queue depth",
    "Oldest queued job",
    "Running versus alive",
    "Orphaned runs and stale pending jobs",
    "Command rate by outcome",
    "Request latency percentiles",
    "Reconciler actions",
)


def dashboard_queries() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def exported_series(client: TestClient) -> set[str]:
    """Every series name a scrape can show: its samples, and each family its `# TYPE`
    lines declare (with a histogram's series), observed or not."""
    client.get("/v1/health", headers=auth("audrey"))
    text = client.get("/metrics", headers=auth("audrey")).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            names.add(name)
            if kind == "histogram":
                names.update(name + series for series in HISTOGRAM_SERIES)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_dashboard_query_names_only_metrics_the_service_exports(
    client: TestClient,
) -> None:
    exported = exported_series(client)
    queries = dashboard_queries()

    named = {name for query in queries for name in METRIC.findall(query)}
    assert named, "the dashboard queries no metric"
    assert named - exported == set()
    assert all(METRIC.search(query) for query in queries)


def test_every_alert_names_only_metrics_the_service_exports(client: TestClient) -> None:
    exported = exported_series(client)

    named = set(METRIC.findall(ALERTS.read_text()))
    assert named - exported == set()


def test_the_dashboard_has_the_panels_an_operator_looks_at() -> None:
    titles = {panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"]}
    assert set(PANELS) <= titles


def test_every_dashboard_query_is_promql_prometheus_accepts(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": query}
                    for n, query in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    checked_file = tmp_path / "dashboard_rules.yml"
    checked_file.write_text(json.dumps(rules))  # JSON is YAML

    checked = run_promtool("check", "rules", str(checked_file))

    assert checked.returncode == 0, checked.stdout + checked.stderr
