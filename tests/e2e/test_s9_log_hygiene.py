"""Scenario 9: no log line of any process holds a secret, key, token, signature or card number.

Runs last (file order), so it scans everything the suite's processes wrote, after driving one
more order of every card itself.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures
from tests.e2e.drivers import CARDS, sign
from tests.e2e.flows import Judge, plan, resolve_challenge, shop
from tests.e2e.logscan import scan_files
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]


def spaced(pan: str) -> str:
    return " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))


async def test_no_log_line_holds_a_secret_token_signature_or_card_number(
    scenario: Scenario,
) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    placed = await shop(stack, plan(tag, len(CARDS), tuple(CARDS)), challenges=False)
    async with aiohttp.ClientSession() as session:
        for order, outcome in zip(
            (p for p in placed if p.redirect_url), (True, False), strict=False
        ):
            await resolve_challenge(session, order.redirect_url or "", complete=outcome)
    await Judge(control, ledger, backend).settle(tag, expected_orders=len(placed), timeout=60)

    creds = stack.config.credentials
    key = creds.webhook_key
    sandbox_signatures = {
        sign(key, json.dumps(d["body"], separators=(",", ":")).encode())
        for d in await control.deliveries()
    }
    tokens = set(stack.token_watch.tokens) | {await control.token()}
    forbidden = {
        "client_secret": {creds.client_secret},
        "webhook_secret": {creds.webhook_secret},
        "merchant_api_key": {creds.merchant_api_key},
        "checkout_session": {p.checkout.token for p in placed},
        "access_token": tokens,
        "signature": needles["signature"] | sandbox_signatures,
        "card_number": set(CARDS.values()) | {spaced(p) for p in CARDS.values()},
    }
    logs = sorted(stack.config.run_dir.glob("*.log"))
    result = scan_files(logs, forbidden)

    figures = Figures("s9 log hygiene")
    figures["files"] = result.files
    figures["lines"] = result.lines
    figures["tokens_known"] = len(tokens)
    figures["signatures_known"] = len(forbidden["signature"])
    figures["findings"] = len(result.findings)
    figures.print(stack.config.run_dir)
    for finding in result.findings[:20]:
        print(f"[e2e] finding: {finding}", flush=True)

    assert tokens - {await control.token()}, "the service's own tokens were seen on the wire"
    assert result.lines > 0
    assert result.findings == ()
