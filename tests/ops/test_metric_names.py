"""The dashboard and the rules only name metrics that shared/metrics.py defines."""

from __future__ import annotations

import pytest

from tests.ops.deploy_files import (
    dashboard_expressions,
    exposed_series,
    metric_names,
    recorded_names,
    rule_expressions,
    rules,
)


def test_the_name_reader_maps_suffixes_back_to_metric_definitions() -> None:
    series = exposed_series()
    assert series["recon_webhook_requests_total"] == "recon_webhook_requests"
    assert series["recon_webhook_to_paid_seconds_bucket"] == "recon_webhook_to_paid_seconds"
    assert series["recon_queue_messages"] == "recon_queue_messages"
    assert "recon_webhook_requests" not in series  # a counter is only exposed with _total
    assert metric_names('sum(rate(recon_a_total{job="recon-worker"}[5m])) / recon:b:rate5m') == {
        "recon_a_total"
    }


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_recon_metric_named_exists_in_shared_metrics(source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    named = set().union(*(metric_names(e) for e in expressions))
    assert named, f"no recon_* metric found in the {source}"
    unknown = named - exposed_series().keys()
    assert not unknown, f"{source} names metrics shared/metrics.py does not define: {unknown}"


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_recording_rule_used_is_recorded(source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    used = set().union(*(recorded_names(e) for e in expressions))
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert used - recorded == set()


def test_the_dashboard_covers_every_family_the_operators_watch() -> None:
    named = set().union(*(metric_names(e) for e in dashboard_expressions()))
    families = {exposed_series()[name] for name in named}
    for family in (
        "recon_webhook_requests",
        "recon_webhook_request_seconds",
        "recon_queue_messages",
        "recon_events_processed",
        "recon_webhook_to_paid_seconds",
        "recon_payrails_requests",
        "recon_payrails_request_seconds",
        "recon_outbox_backlog",
        "recon_sweeper_repairs",
        "recon_operations_executed",
        "recon_operations_reconciled",
        "recon_operations",
        "recon_operations_oldest_pending_age_seconds",
        "recon_authorizations_near_expiry",
    ):
        assert family in families, f"the dashboard has no panel on {family}"
