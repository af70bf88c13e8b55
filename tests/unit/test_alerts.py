"""The PrometheusRule's alerts pass `promtool check rules` and their unit tests (`promtool test rules`,
tests/data/monitoring/alerts-test.yaml), and every alert is tested both firing and quiet.
Which series they read is checked against the real exporters in tests/e2e/test_monitoring_series.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.promql import matched_labels, metric_names
from tests.tools import PROMTOOL

ROOT = Path(__file__).parents[2]
RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = ROOT / "tests" / "data" / "monitoring" / "alerts-test.yaml"


def rules() -> list[dict[str, Any]]:
    """Every rule of the PrometheusRule."""
    return [rule for group in yaml.safe_load(RULE.read_text())["spec"]["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    out = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def rule_file(folder: Path) -> Path:
    """The PrometheusRule's groups as a plain Prometheus rule file, as the Prometheus Operator
    hands them to Prometheus."""
    path = folder / "stateful-route.rules.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(RULE.read_text())["spec"]))
    return path


def test_promtool_checks_the_rules(tmp_path):
    out = promtool("check", "rules", str(rule_file(tmp_path)), cwd=tmp_path)
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_promtool_unit_tests_of_the_alerts_pass(tmp_path):
    rule_file(tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    assert "SUCCESS" in promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)


def test_every_alert_is_tested_firing_and_quiet():
    checks = [
        check for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for check in case["alert_rule_test"]
    ]
    alerts = {rule["alert"] for rule in rules()}
    assert alerts == {
        "StatefulRouteRedisUnreachable",
        "StatefulRouteEvictionsSpiking",
        "StatefulRouteNoAvailablePod",
        "StatefulRouteOperatorNotReconciling",
    }
    fired = {check["alertname"] for check in checks if check.get("exp_alerts")}
    quiet = {check["alertname"] for check in checks if not check.get("exp_alerts")}
    assert fired == alerts
    assert quiet == alerts


def test_every_alert_says_what_and_how_bad():
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]


def test_the_scanner_tells_metric_names_from_functions_keywords_and_labels():
    expr = (
        'sum by (le, handler) (rate(a_seconds_bucket{namespace=~"$ns", service!="x"}[5m])) '
        "/ on (pod) group_left () b:ratio offset 5m > bool 1e3 and time() - max(c_seconds) > 0.25 * inf"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b:ratio", "c_seconds"}
    assert matched_labels(expr) == {"a_seconds_bucket": {"namespace", "service"}}
