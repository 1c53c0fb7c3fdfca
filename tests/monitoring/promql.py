"""What the monitoring tests share: the rules and the dashboard, promtool, the metric names.

prometheus and promtool come from image/prometheus.sh (built from the Prometheus Go module into
the version-keyed cache on first use; minutes on two cores); where they cannot be had, the tests
that need them are skipped with the script's reason.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.shell.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULE_OBJECT = MONITORING / "prometheusrule.yaml"
CHART_RULES = REPO / "charts" / "podtrail" / "files" / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS_TOOL = REPO / "image" / "prometheus.sh"

Obj = dict[str, Any]

# Grafana's own variables, replaced by something PromQL accepts before parsing.
GRAFANA_INTERVALS = ("__rate_interval", "__interval", "__range")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


@functools.cache
def prometheus_dir() -> Path | str:
    """The directory of prometheus and promtool, or why they cannot be had here."""
    result = subprocess.run(
        ["bash", str(PROMETHEUS_TOOL)], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        said = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
        return f"prometheus and promtool cannot be had here (image/prometheus.sh: {said[-1]})"
    return Path(result.stdout.strip().splitlines()[-1])


def tool(name: str) -> str:
    """The path of prometheus or promtool; skips the test when they cannot be had."""
    found = prometheus_dir()
    if isinstance(found, str):
        pytest.skip(found)
    return str(found / name)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result, whatever it is."""
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def rule_object(path: Path = RULE_OBJECT) -> Obj:
    """The PrometheusRule object of monitoring/ (or another file holding one)."""
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def rule_file(rule: Obj) -> Obj:
    """A PrometheusRule's spec: a Prometheus rule file (`groups:`)."""
    spec = rule["spec"]
    assert isinstance(spec, dict) and set(spec) == {"groups"}, "spec holds groups only"
    return spec


def rules_of(spec: Obj) -> Iterator[Obj]:
    """Every rule of a rule file."""
    for group in spec["groups"]:
        yield from group["rules"]


def dashboard() -> Obj:
    """The Grafana dashboard."""
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels(board: Obj) -> Iterator[Obj]:
    """Every panel, those inside collapsed rows too."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_variables(board: Obj) -> list[str]:
    """The names of the dashboard's template variables."""
    return [item["name"] for item in board.get("templating", {}).get("list", [])]


def grafana_to_promql(expr: str, variables: Iterable[str]) -> str:
    """A panel's expression as Prometheus would get it: Grafana's variables replaced."""
    for name in GRAFANA_INTERVALS:
        expr = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", "5m", expr)
    for name in variables:
        expr = re.sub(rf"\$(?:{re.escape(name)}\b|\{{{re.escape(name)}(?::\w+)?\}})", ".+", expr)
    return expr


def dashboard_expressions(board: Obj) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target of the dashboard."""
    variables = dashboard_variables(board)
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"panel {panel['id']} ({panel['title']}) target {target['refId']}"
                found.append((where, grafana_to_promql(target["expr"], variables)))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords).

    Strings, label matchers, ranges and label lists (by, without, on, ...) are taken out
    first; what is left that is a name and not a call is a metric.
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


@functools.cache
def exported_names() -> frozenset[str]:
    """Every series name the operator's /metrics shows, from a fresh Metrics registry."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{end}" for end in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return frozenset(names)


def write_yaml(path: Path, content: Obj) -> Path:
    """Write YAML (block style) and return the path."""
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path
