"""orders and order_transitions: a status is one of the order state machine's states

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# OrderStatus as of this revision, written out: a migration does not change when the code does.
# A new status widens these constraints in a new migration (CONTRIBUTING.md).
STATUSES = (
    "created",
    "authorizing",
    "action_required",
    "paid",
    "payment_failed",
    "needs_review",
)
COLUMNS = (
    ("orders", "status"),
    ("order_transitions", "from_status"),
    ("order_transitions", "to_status"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.create_check_constraint(column, table, sa.column(column).in_(STATUSES))


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_constraint(f"ck_{table}_{column}", table, type_="check")
