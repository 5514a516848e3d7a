"""Creating an order from a commerce backend's terms: one rule for the HTTP API and the command.

The same reference with the same terms is the same order (a retry, answered again); with other
terms it is a conflict, and nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Order
from shared.errors import ReconError
from shared.order_store import lock_order
from shared.state_machine import OrderStatus
from shared.validation import OrderTerms


class OrderTermsConflict(ReconError):
    """The reference exists with another amount, currency or customer: ``order``, still locked."""

    def __init__(self, order: Order, fields: list[str]) -> None:
        super().__init__(f"order {order.reference} exists with other {', '.join(fields)}")
        self.order = order
        self.reference = order.reference
        self.fields = fields


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    order: Order
    created: bool  # False: the same terms were sent before


def conflicts(order: Order, terms: OrderTerms) -> list[str]:
    """The fields in which ``terms`` differ from the stored order's."""
    pairs = {
        "amount.value": (order.amount_value, terms.amount.value),
        "amount.currency": (order.currency, terms.amount.currency),
        "customerReference": (order.customer_reference, terms.customer_reference),
    }
    return [name for name, (stored, asked) in pairs.items() if stored != asked]


async def create_order(session: AsyncSession, terms: OrderTerms) -> CreatedOrder:
    """Insert the order, or lock the one with this reference and check its terms. No commit."""
    inserted = await session.scalar(
        insert(Order)
        .values(
            reference=terms.reference,
            customer_reference=terms.customer_reference,
            amount_value=terms.amount.value,
            currency=terms.amount.currency,
            status=OrderStatus.CREATED.value,
        )
        .on_conflict_do_nothing(index_elements=["reference"])
        .returning(Order.id)
    )
    order = await lock_order(session, reference=terms.reference)
    assert order is not None  # inserted or already there
    differing = conflicts(order, terms)
    if differing:
        raise OrderTermsConflict(order, differing)
    return CreatedOrder(order, created=inserted is not None)
