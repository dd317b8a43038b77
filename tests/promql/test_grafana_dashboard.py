"""The example Grafana dashboard of docs/grafana.md: every query of it (with Grafana's
variables filled in as Grafana fills them) parses and runs as a range query."""

import json
from pathlib import Path

import pytest
from django.conf import settings

from .conftest import T0

DASHBOARD = Path(settings.BASE_DIR) / "docs" / "grafana-dashboard.json"


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return [query.replace("$host", ".*").replace("$__rate_interval", "2m") for query in queries]


@pytest.mark.django_db
@pytest.mark.parametrize("query", dashboard_queries())
def test_dashboard_queries_run(load, client_for, query):
    for host in ("gw-1", "gw-2"):
        labels = {"host": host}
        load("cpu_usage_percent", labels, [(t, 10.0) for t in range(0, 601, 60)])
        load(
            "network_bytes_received_total", {**labels, "interface": "eth0"}, [(t, t * 100.0) for t in range(0, 601, 60)]
        )
        load("network_bytes_sent_total", {**labels, "interface": "eth0"}, [(t, t * 50.0) for t in range(0, 601, 60)])
    load("service_up", {"target": "api", "check": "http"}, [(600, 1.0)])
    response = client_for("viewer").get(
        "/prometheus/api/v1/query_range", {"query": query, "start": T0, "end": T0 + 600, "step": 60}
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"]["resultType"] == "matrix"


def test_the_host_variable_query_is_answered(load, client_for):
    load("cpu_usage_percent", {"host": "gw-1"}, [(0, 1.0)])
    response = client_for("viewer").get("/prometheus/api/v1/label/host/values", {"match[]": "cpu_usage_percent"})
    assert response.json() == {"status": "success", "data": ["gw-1"]}
