"""payment attempts: a declined order is paid again with another card, in a new execution

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    op.create_check_constraint("attempt_positive", "orders", "attempt >= 1")
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name="fk_payment_attempts_order_id_orders",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_attempts"),
        sa.UniqueConstraint("execution_id", name="uq_payment_attempts_execution_id"),
        sa.UniqueConstraint("order_id", "attempt", name="uq_payment_attempts_order_id_attempt"),
    )


def downgrade() -> None:
    op.drop_table("payment_attempts")
    op.drop_constraint(op.f("ck_orders_attempt_positive"), "orders", type_="check")
    op.drop_column("orders", "attempt")
