"""Readers for the files under deploy/: rules, dashboard, manifests, and the code they mirror."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "recon.json"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"(?<![\w:])recon_[A-Za-z0-9_]+")
_RECORDED = re.compile(r"(?<![\w:])recon:[A-Za-z0-9_:]+")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def rules() -> Iterator[dict[str, Any]]:
    """Every recording and alerting rule in deploy/prometheus/rules."""
    for path in RULES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


def dashboard_panels() -> Iterator[dict[str, Any]]:
    """Every panel of the dashboard, rows' nested panels included."""
    stack = list(json.loads(DASHBOARD.read_text())["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        yield panel


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]


def rule_expressions() -> list[str]:
    return [str(rule["expr"]) for rule in rules()]


def _without_strings(expr: str) -> str:
    """The expression with label values blanked, so "recon-worker" is never read as a name."""
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """The raw ``recon_*`` series an expression reads."""
    return set(_METRIC.findall(_without_strings(expr)))


def recorded_names(expr: str) -> set[str]:
    """The ``recon:*`` recording-rule series an expression reads."""
    return set(_RECORDED.findall(_without_strings(expr)))


def exposed_series() -> dict[str, str]:
    """Every series name the metrics of shared.metrics expose, mapped to the metric's family."""
    series: dict[str, str] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            for suffix in _SUFFIXES[family.type]:
                series[family.name + suffix] = family.name
    return series


def k8s_documents() -> list[dict[str, Any]]:
    """Every object of every resource file the kustomization lists."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_yaml_documents(K8S / name)]
