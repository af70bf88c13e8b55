"""manifests/monitoring: the Grafana dashboard is well formed and its PromQL parses (promtool), the
kustomization ships it as a ConfigMap Grafana's sidecar loads, and the PodMonitor scrapes the
operator's metrics port. Which series the dashboard reads is checked against the real exporters in
tests/e2e/test_monitoring_series.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.promql import grafana_to_promql
from tests.tools import PROMTOOL
from tests.unit.test_manifests import render

ROOT = Path(__file__).parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([a-zA-Z_]\w*)\)$")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard, as Prometheus receives it: the panels' targets, and
    the series selector of each `label_values(selector, label)` variable."""
    found = [
        grafana_to_promql(target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, variable
            found.append(match[1])
    return found


def test_the_dashboards_promql_parses(tmp_path):
    """promtool parses each expression as a recording rule's: a syntax error fails here."""
    rules = [{"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(expressions())]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert PROMTOOL, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_the_dashboard_is_well_formed():
    board = dashboard()
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        for target in panel.get("targets", []):
            # Every query goes to the data source the user picks.
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "service"} <= variables.keys()
    route_panels = [p for p in panels if "$service" in json.dumps(p.get("targets", []))]
    assert route_panels  # the route variables are used


def test_the_kustomization_ships_the_dashboard_for_grafanas_sidecar():
    docs = render(MONITORING)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["grafana-dashboard.json"]) == dashboard()
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ConfigMap", "PodMonitor", "PrometheusRule"}
    assert {d["metadata"]["namespace"] for d in docs} == {"stateful-route-system"}


def test_the_pod_monitor_scrapes_the_operators_metrics_port_keeping_route_labels():
    (monitor,) = [d for d in render(MONITORING) if d["kind"] == "PodMonitor"]
    (deployment,) = [d for d in render(ROOT / "manifests" / "base") if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert endpoint["port"] in ports
    assert str(ports[endpoint["port"]]) == container["args"][container["args"].index("--metrics-port") + 1]
    # The series' own namespace and pod labels must win over the operator pod's.
    assert endpoint["honorLabels"] is True
