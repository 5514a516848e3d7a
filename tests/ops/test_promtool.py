"""promtool checks the rules and runs their unit tests; every alert has a firing and a quiet case.

promtool comes from the Debian package ``prometheus`` (`make test` installs it). Its absence is a
failure, never a skip: these alerts are what pages people.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.ops.deploy_files import (
    DEPLOY,
    RULE_TESTS,
    RULES,
    dashboard_expressions,
    load_yaml,
    rules,
)

REQUIRED_ALERTS = {
    "ReconWebhookUnavailable",  # ingress 503s
    "ReconWebhookUnauthorized",  # ingress 401s
    "ReconCheckoutUnavailable",  # checkout API 503s
    "ReconDeadLetters",
    "ReconOutboxStale",
    "ReconWebhookToPaidSlow",
    "ReconOrdersNeedReview",
    "ReconTargetDown",
    "ReconPayrailsErrors",
    "ReconOperationFailures",  # captures, cancels, refunds that Payrails failed
    "ReconOperationsStuckInFlight",
    "ReconOperationsUnknown",  # money may have moved: a person decides
    "ReconAuthorizationsNearExpiry",  # manual capture not done in time
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install the Debian package 'prometheus' "
            "(apt-get install --no-install-recommends prometheus; `make test` does it as root)"
        )
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=30, check=False)


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    result = promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_accepts_the_scrape_config() -> None:
    result = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Grafana's $__rate_interval becomes 5m; promtool then parses each query as a rule."""
    queries = [e.replace("$__rate_interval", "5m") for e in dashboard_expressions()]
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)],
    }
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_is_defined() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases: dict[str, set[bool]] = defaultdict(set)
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases[case["alertname"]].add(bool(case.get("exp_alerts")))
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    missing = {alert for alert in alerts if cases[alert] != {True, False}}
    assert not missing, f"alerts without both a firing and a quiet case: {sorted(missing)}"


def test_every_alert_has_a_row_in_the_runbook() -> None:
    """deploy/README.md "Alerts and what to do": one row per alert, with its first steps."""
    section = (DEPLOY / "README.md").read_text().split("\n## Alerts and what to do\n", 1)[1]
    runbook = section.split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in runbook.splitlines() if line.startswith("| ")}
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - rows == set()
