"""What scenario 13 needs beyond the shared suite: a stack on the replica pair, and its counts.

The stack's processes connect straight to the pair's multi-host URL (no TCP proxy: the outage
is the primary's death, not a cut line) and to the shared RabbitMQ under a prefix of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tests.e2e.counting import Ledger, queue_depth
from tests.e2e.harness import Stack, StackConfig
from tests.e2e.outages import Outage


class DirectStack(Stack):
    """A stack whose processes use the URLs as given: no proxies, and no outage of its own."""

    def __init__(self, config: StackConfig) -> None:
        super().__init__(config)
        self.mode = "direct"  # start() builds proxies only in "proxy" mode

    def database_outage(self) -> Outage:
        raise NotImplementedError("the scenario kills the pair's primary itself")

    def broker_outage(self) -> Outage:
        raise NotImplementedError("this stack's broker is the shared one: never taken down")


@dataclass(frozen=True)
class DoubledTransition:
    """One order whose status changed the same way, for the same event, more than once."""

    reference: str
    from_status: str
    to_status: str
    event_id: str | None
    times: int


async def doubled_transitions(ledger: Ledger, reference_prefix: str) -> list[DoubledTransition]:
    """Transitions recorded twice per order, from, to and event: a change applied twice."""
    async with await psycopg.AsyncConnection.connect(ledger.url, connect_timeout=5) as conn:
        cursor = await conn.execute(
            """
            SELECT o.reference, t.from_status::text, t.to_status::text, t.event_id, count(*)
              FROM order_transitions t JOIN orders o ON o.id = t.order_id
             WHERE o.reference LIKE %s
             GROUP BY o.reference, t.from_status, t.to_status, t.event_id
            HAVING count(*) > 1
            """,
            (reference_prefix + "%",),
        )
        rows = await cursor.fetchall()
    return [DoubledTransition(*row) for row in rows]


async def dead_letters(stack: Stack) -> int:
    """Messages in the stack's dead-letter queue (its prefix is its own: every one is ours)."""
    return await queue_depth(stack.config.amqp_url, stack.names.dead_letters_queue)
