"""The return page template: escaped text, script-safe JSON, same-origin postMessage."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal

from ingress.checkout.order_views import OrderView
from ingress.checkout.payment_return import load_return_template, render_return_page
from shared.money import Money
from shared.state_machine import OrderStatus


def failed_view(reason: str) -> OrderView:
    return OrderView(
        reference="order-1",
        status=OrderStatus.PAYMENT_FAILED,
        execution_id="exec-1",
        amount=Money(Decimal("1.00"), "EUR"),
        threeds_url=None,
        failure_reason=reason,
        updated_at=datetime.now(UTC),
        confirmed_by="return",
    )


def test_a_hostile_reason_cannot_close_the_script_or_inject_markup() -> None:
    reason = "</script><script>alert(1)</script>"
    page = render_return_page(load_return_template(), failed_view(reason), "nonce123")
    assert "<script>alert(1)" not in page
    match = re.search(r'id="threeds-result">(.*?)</script>', page)
    assert match is not None
    assert json.loads(match.group(1))["reason"] == reason
    assert "&lt;/script&gt;" in page


def test_the_page_posts_only_to_its_own_origin_with_the_nonce() -> None:
    page = render_return_page(load_return_template(), failed_view("Declined"), "nonce123")
    assert 'nonce="nonce123"' in page
    assert "postMessage(message, window.location.origin)" in page
    assert 'data-status="failed"' in page
