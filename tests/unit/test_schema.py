"""The migrated database matches the models, and refuses what the application would refuse."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Base, Order, table_of


def test_migrations_at_head_build_exactly_the_schema_of_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def order_row(**overrides: Any) -> dict[str, Any]:
    return {
        "reference": f"schema-{uuid.uuid4().hex[:12]}",
        "customer_reference": "cust_1",
        "amount_value": Decimal("12.50"),
        "currency": "EUR",
        "status": "created",
        **overrides,
    }


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("currency", "eur"),
        ("currency", "E1R"),
        ("currency", "EU"),
        ("amount_value", Decimal("0")),
        ("amount_value", Decimal("-1.00")),
    ],
)
async def test_the_orders_table_refuses_a_bad_currency_or_a_non_positive_amount(
    sessions: async_sessionmaker[AsyncSession], column: str, value: object
) -> None:
    with pytest.raises(IntegrityError, match="ck_orders_"):
        async with sessions.begin() as session:
            await session.execute(insert(table_of(Order)), [order_row(**{column: value})])
