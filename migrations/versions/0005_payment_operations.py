"""payment operations after authorization, the order's money totals and the data the books need

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# OperationKind, OperationState and CaptureMode as of this revision, written out: a migration
# does not change when the code does.
KINDS = ("authorize", "capture", "cancel", "refund")
STATES = ("requested", "in_flight", "succeeded", "failed", "unknown")
CAPTURE_MODES = ("instant", "manual")
AMOUNT = sa.Numeric(precision=18, scale=4)

ORDER_COLUMNS = (
    sa.Column("captured_value", AMOUNT, server_default=sa.text("0"), nullable=False),
    sa.Column("refunded_value", AMOUNT, server_default=sa.text("0"), nullable=False),
    sa.Column("capture_mode", sa.String(length=16), server_default="instant", nullable=False),
    sa.Column("payrails_payment_id", sa.String(length=64), nullable=True),
    sa.Column("psp_reference", sa.String(length=128), nullable=True),
    sa.Column("card_network", sa.String(length=32), nullable=True),
    sa.Column("card_last4", sa.String(length=4), nullable=True),
    sa.Column("threeds_outcome", sa.String(length=32), nullable=True),
)
ORDER_CHECKS = {
    "capture_mode": sa.column("capture_mode").in_(CAPTURE_MODES),
    "captured_in_range": "captured_value >= 0 AND captured_value <= amount_value",
    "refunded_in_range": "refunded_value >= 0 AND refunded_value <= captured_value",
    # the books keep the last four digits of a card, never more
    "card_last4_four_digits": "card_last4 ~ '^[0-9]{4}$'",
}


def _create_operations() -> None:
    op.create_table(
        "payment_operations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("amount_value", AMOUNT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=True),
        sa.Column("idempotency_key", sa.UUID(), nullable=False),
        sa.Column("command_id", sa.String(length=100), nullable=True),
        sa.Column("payrails_execution_id", sa.String(length=64), nullable=True),
        sa.Column("payrails_action_id", sa.String(length=64), nullable=True),
        sa.Column("result_code", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name="fk_payment_operations_order_id_orders",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_operations"),
        sa.UniqueConstraint("idempotency_key", name="uq_payment_operations_idempotency_key"),
        sa.UniqueConstraint("command_id", name="uq_payment_operations_command_id"),
        sa.UniqueConstraint("payrails_action_id", name="uq_payment_operations_payrails_action_id"),
        # named by the convention: ck_payment_operations_<name>
        sa.CheckConstraint(sa.column("kind").in_(KINDS), name="kind"),
        sa.CheckConstraint(sa.column("state").in_(STATES), name="state"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
        sa.CheckConstraint("amount_value > 0", name="amount_positive"),
        sa.CheckConstraint(
            "(kind = 'capture') = (final IS NOT NULL)",
            name="final_only_on_capture",
        ),
    )
    op.create_index("ix_payment_operations_order_id", "payment_operations", ["order_id"])
    op.create_index(
        "ix_payment_operations_state_updated_at", "payment_operations", ["state", "updated_at"]
    )


def upgrade() -> None:
    for column in ORDER_COLUMNS:
        op.add_column("orders", column)
    for name, condition in ORDER_CHECKS.items():
        op.create_check_constraint(name, "orders", condition)
    _create_operations()


def downgrade() -> None:
    op.drop_index("ix_payment_operations_state_updated_at", table_name="payment_operations")
    op.drop_index("ix_payment_operations_order_id", table_name="payment_operations")
    op.drop_table("payment_operations")
    for name in reversed(ORDER_CHECKS):
        op.drop_constraint(op.f(f"ck_orders_{name}"), "orders", type_="check")
    for column in reversed(ORDER_COLUMNS):
        op.drop_column("orders", column.name)
