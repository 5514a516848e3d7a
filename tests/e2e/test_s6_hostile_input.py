"""Scenario 6: fuzzed requests to the webhook ingress never get a 5xx and never kill it."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.counting import Figures
from tests.e2e.fuzz import Fuzzer, run_fuzz
from tests.e2e.harness import Stack
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

MAX_BODY = 1024 * 1024  # WEBHOOK_MAX_BODY_BYTES' default, which the stack keeps


async def test_fuzzed_requests_get_no_5xx_and_leave_the_ingress_healthy(
    stack: Stack, needles: dict[str, set[str]]
) -> None:
    ingress = stack.ingresses[0]
    port = int(ingress.health_url.split(":")[2].split("/")[0])
    fuzzer = Fuzzer(stack.config.credentials.webhook_key, seed=6, max_body=MAX_BODY)

    result = await run_fuzz(fuzzer, "127.0.0.1", port, size(10_000, 30_000))
    needles["signature"].update(fuzzer.signatures)
    async with aiohttp.ClientSession() as session:
        healthy = await ingress.healthy(session)
        async with session.get(f"{ingress.admin_url}/readyz") as response:
            ready = response.status

    figures = Figures("s6 hostile input")
    figures["requests"] = result.sent
    figures["per_s"] = result.sent / result.seconds if result.seconds else 0.0
    figures["statuses"] = dict(sorted(result.statuses.items()))
    figures["kinds"] = dict(sorted(result.kinds.items()))
    figures["5xx"] = len(result.server_errors)
    figures["no_answer_by_kind"] = dict(sorted(result.no_answer.items()))
    figures.print(stack.config.run_dir)

    assert result.sent >= size(10_000, 30_000)
    assert result.server_errors == []
    # Only bytes that are not HTTP may go unanswered (the server closes, or waits for the rest).
    assert set(result.no_answer) <= {"raw_malformed"}, result.no_answer
    stack.check_alive()
    assert healthy
    assert ready == 200
