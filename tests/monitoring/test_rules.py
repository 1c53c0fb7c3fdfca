"""The alert rules and the Grafana dashboard of monitoring/, without a cluster.

Every rule and every dashboard expression parses (promtool check rules; the dashboard's
expressions go in as recording rules) and names only metrics the operator registers; the rules
behave as documented on made-up series (promtool test rules); the chart's copy of the rules is
the same file, and the chart renders the same rules, scoped to its release.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import kubectl_path, render
from tests.monitoring.promql import (
    CHART_RULES,
    DASHBOARD,
    MONITORING,
    RULE_OBJECT,
    Obj,
    dashboard,
    dashboard_expressions,
    exported_names,
    metric_names,
    promtool,
    rule_file,
    rule_object,
    rules_of,
    write_yaml,
)

KILLED = "PodtrailContainersKilledAfterGrace"
NEW_ALERTS = {
    KILLED: "podtrail_containers_killed_after_grace_total",
    "PodtrailContainersOOMKilled": "podtrail_containers_oom_killed_total",
    "PodtrailPreStopOverruns": "podtrail_prestop_overruns_total",
}


def checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, f"{what}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_the_metric_name_finder() -> None:
    expr = (
        'sum by (namespace, le) (label_replace(rate(a_total{job=~"x",b="c"}[5m] offset 1h),'
        ' "namespace", "$1", "exported_namespace", "(.+)")) > 0.5e3 and on (x) b:rec'
        " unless bool c or histogram_quantile(0.9, sum(rate(d_bucket[1m])) by (le))"
    )
    assert metric_names(expr) == {"a_total", "b:rec", "c", "d_bucket"}
    assert metric_names("(max(podtrail_leader) or vector(0)) < 1") == {"podtrail_leader"}


def test_the_rules_parse(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "rules.yaml", rule_file(rule_object()))
    said = checked(promtool("check", "rules", str(path)), "promtool check rules")
    count = len(list(rules_of(rule_file(rule_object()))))
    assert f"{count} rules found" in said


def test_the_rules_name_only_metrics_the_operator_exports() -> None:
    exported = exported_names()
    for rule in rules_of(rule_file(rule_object())):
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']} uses {sorted(names - exported)}"


def test_the_rules_are_documented_and_labelled() -> None:
    spec = rule_file(rule_object())
    (group,) = spec["groups"]
    alerts = [rule["alert"] for rule in group["rules"]]
    assert len(alerts) == len(set(alerts))
    assert set(NEW_ALERTS) | {"PodtrailWriteLag", "PodtrailStreamRestarts"} <= set(alerts)
    docs = (MONITORING.parent / "docs" / "monitoring.md").read_text()
    for rule in group["rules"]:
        assert rule["labels"] == {"severity": "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"`{rule['alert']}`" in docs, f"{rule['alert']} is not in docs/monitoring.md"


def test_the_dashboard_parses_and_uses_exported_metrics(tmp_path: Path) -> None:
    board = dashboard()
    assert board["uid"] == "podtrail" and board["title"]
    expressions = dashboard_expressions(board)
    assert len(expressions) >= 15
    exported = exported_names()
    recorded = []
    for index, (where, expr) in enumerate(expressions):
        names = metric_names(expr)
        assert names, where
        assert names <= exported, f"{where} uses {sorted(names - exported)}"
        recorded.append({"record": f"podtrail_dashboard:expression_{index}", "expr": expr})
    path = write_yaml(tmp_path / "dashboard.yaml", {"groups": [{"name": "d", "rules": recorded}]})
    checked(promtool("check", "rules", str(path)), "the dashboard's expressions")


def test_the_dashboard_variables_use_exported_metrics() -> None:
    exported = exported_names()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        assert query.startswith("label_values("), variable["name"]
        metric = query.removeprefix("label_values(").split(",")[0].strip()
        assert metric in exported, variable["name"]


def test_the_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def behaviour_tests() -> Obj:
    """promtool unit tests of the namespace alerts and the lag alert on made-up series."""
    tests: list[Obj] = []
    for alert, metric in NEW_ALERTS.items():
        for labels in ('namespace="shop"', 'namespace="podtrail-system",exported_namespace="shop"'):
            tests.append(
                {
                    "interval": "1m",
                    "input_series": [
                        {"series": f'{metric}{{job="podtrail",{labels}}}', "values": "0 0 1 1"},
                        {"series": f'{metric}{{job="podtrail",namespace="calm"}}', "values": "0x3"},
                    ],
                    "alert_rule_test": [
                        {"eval_time": "1m", "alertname": alert, "exp_alerts": []},
                        {
                            "eval_time": "3m",
                            "alertname": alert,
                            "exp_alerts": [
                                {"exp_labels": {"severity": "warning", "namespace": "shop"}}
                            ],
                        },
                        {"eval_time": "15m", "alertname": alert, "exp_alerts": []},
                    ],
                }
            )
    slow = 'podtrail_write_lag_seconds_bucket{instance="a:9090",le="%s"}'
    tests.append(
        {
            "interval": "1m",
            "input_series": [
                {"series": slow % "5", "values": "0+1x40"},
                {"series": slow % "30", "values": "0+10x40"},
                {"series": slow % "+Inf", "values": "0+10x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "PodtrailWriteLag", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "PodtrailWriteLag",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "instance": "a:9090"}}],
                },
            ],
        }
    )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def test_the_alerts_fire_by_the_pods_namespace(tmp_path: Path) -> None:
    """Under its own `namespace` label, or under `exported_namespace` when the scrape gave the
    target's namespace that name; once per kill, resolved when the window has passed."""
    spec = copy.deepcopy(rule_file(rule_object()))
    for rule in rules_of(spec):
        rule.pop("annotations")  # promtool compares annotations too; the labels are the point
    write_yaml(tmp_path / "rules.yaml", spec)
    path = write_yaml(tmp_path / "tests.yaml", behaviour_tests())
    checked(promtool("test", "rules", str(path)), "promtool test rules")


def test_the_chart_ships_the_same_rules() -> None:
    assert CHART_RULES.read_bytes() == RULE_OBJECT.read_bytes(), (
        "charts/podtrail/files/prometheusrule.yaml differs from monitoring/prometheusrule.yaml:"
        " cp monitoring/prometheusrule.yaml charts/podtrail/files/"
    )


def chart_rules(values: Obj) -> list[Obj]:
    from tests.deploy.test_chart import NAMESPACE, helm_binary, template

    objects = template(helm_binary(), values, "trail", NAMESPACE)
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    return list(rules_of(rule["spec"]))


def test_the_chart_renders_the_monitoring_rules_scoped_to_its_release(tmp_path: Path) -> None:
    rendered = chart_rules({"metrics": {"prometheusRule": {"enabled": True}}})
    source = list(rules_of(rule_file(rule_object())))
    assert [r["alert"] for r in rendered] == [r["alert"] for r in source]
    selector = 'namespace="observability",service="trail-podtrail-metrics"'
    for ours, theirs in zip(rendered, source, strict=True):
        assert (
            ours["expr"].replace(f"{{{selector}}}", "").replace(f"{selector},", "")
            == (theirs["expr"])
        )
        assert {k: v for k, v in ours.items() if k != "expr"} == {
            k: v for k, v in theirs.items() if k != "expr"
        }
    path = write_yaml(tmp_path / "chart.yaml", {"groups": [{"name": "c", "rules": rendered}]})
    checked(promtool("check", "rules", str(path)), "the chart's rules")


def test_the_chart_values_tune_the_rules() -> None:
    tuned: dict[str, Any] = {
        "enabled": True,
        "seriesSelector": 'job="podtrail"',
        "alertLabels": {"severity": "page", "team": "platform"},
        "leaderAbsentFor": "9m",
        "streamOutageSeconds": 300,
        "streamRestarts": 2,
        "writeFailures": 4,
    }
    rendered = {r["alert"]: r for r in chart_rules({"metrics": {"prometheusRule": tuned}})}
    assert rendered["PodtrailLeaderAbsent"]["for"] == "9m"
    assert rendered["PodtrailStreamDown"]["expr"].endswith("> 300")
    assert rendered["PodtrailStreamRestarts"]["expr"].endswith("> 2")
    assert rendered["PodtrailRecordWriteFailures"]["expr"].endswith(">= 4")
    assert 'podtrail_leader{job="podtrail"}' in rendered["PodtrailLeaderAbsent"]["expr"]
    for rule in rendered.values():
        assert rule["labels"] == {"severity": "page", "team": "platform"}


def test_the_kustomization_ships_the_rule_and_the_dashboard() -> None:
    kubectl = kubectl_path()
    if kubectl is None:
        pytest.skip("no kubectl to render monitoring/ with")
    objects = {obj["kind"]: obj for obj in render(kubectl, MONITORING)}
    assert set(objects) == {"PrometheusRule", "ConfigMap"}
    rule = objects["PrometheusRule"]
    assert rule["metadata"]["namespace"] == "podtrail-system"
    assert rule["spec"] == rule_object()["spec"]
    board = objects["ConfigMap"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["data"]["podtrail.json"] == DASHBOARD.read_text()
    assert yaml.safe_load(RULE_OBJECT.read_text())["metadata"]["name"] == "podtrail"
