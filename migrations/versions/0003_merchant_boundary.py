"""checkout sessions bound to one order, and merchant commands executed at most once

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name="fk_checkout_sessions_order_id_orders",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checkout_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_checkout_sessions_token_hash"),
    )
    op.create_index("ix_checkout_sessions_order_id", "checkout_sessions", ["order_id"])
    op.create_table(
        "merchant_commands",
        sa.Column("command_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("order_reference", sa.String(length=64), nullable=False),
        sa.Column("answer_message_id", sa.String(length=100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("command_id", name="pk_merchant_commands"),
    )


def downgrade() -> None:
    op.drop_table("merchant_commands")
    op.drop_index("ix_checkout_sessions_order_id", table_name="checkout_sessions")
    op.drop_table("checkout_sessions")
