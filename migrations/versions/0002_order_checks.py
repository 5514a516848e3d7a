"""orders: currency is an ISO 4217 code shape, amount is positive

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The application validates both on the way in; the database refuses them too, so no other
    # writer (a script, a replay, a future bug) can store a float-ish or lower-case amount.
    op.create_check_constraint("currency_iso_4217", "orders", "currency ~ '^[A-Z]{3}$'")
    op.create_check_constraint("amount_positive", "orders", "amount_value > 0")


def downgrade() -> None:
    op.drop_constraint("ck_orders_amount_positive", "orders", type_="check")
    op.drop_constraint("ck_orders_currency_iso_4217", "orders", type_="check")
