"""SQLAlchemy 2 typed models (ARCHITECTURE section 5). Schema changes go through Alembic."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.operation_states import CaptureMode, OperationKind, OperationState
from shared.state_machine import OrderStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Amounts: up to 14 integer digits and 4 fraction digits covers every ISO 4217 minor unit.
AMOUNT = Numeric(18, 4)


def order_status(name: str) -> Enum:
    """An OrderStatus column: VARCHAR(32) holding the value, with a check constraint ``name``.

    The constraint (ck_<table>_<name>) lists every OrderStatus value; a migration widens it
    whenever a status is added (CONTRIBUTING.md, "Adding an order status").
    """
    return Enum(
        OrderStatus,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda statuses: [status.value for status in statuses],
    )


def value_enum(enum: type[StrEnum], name: str, length: int = 16) -> Enum:
    """A StrEnum column: VARCHAR holding the value, with a check constraint ``name`` listing
    every member (a migration widens it when a member is added)."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements (bulk inserts skip the ORM's per-row work)."""
    return cast(Table, model.__table__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSONB}


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    customer_reference: Mapped[str] = mapped_column(String(64))
    amount_value: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[OrderStatus] = mapped_column(order_status("status"), index=True)
    execution_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    payment_instrument_id: Mapped[str | None] = mapped_column(String(128))
    payment_method_code: Mapped[str | None] = mapped_column(String(64))
    threeds_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    version: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    # The payment attempt execution_id belongs to; a declined order is paid again in the next.
    attempt: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    # The money picture's totals, kept with the operations that make them (shared/money_picture)
    captured_value: Mapped[Decimal] = mapped_column(AMOUNT, default=0, server_default=text("0"))
    refunded_value: Mapped[Decimal] = mapped_column(AMOUNT, default=0, server_default=text("0"))
    capture_mode: Mapped[CaptureMode] = mapped_column(
        value_enum(CaptureMode, "capture_mode"),
        default=CaptureMode.INSTANT,
        server_default=CaptureMode.INSTANT.value,
    )
    # What the books need, as Payrails reports it; never more of a card than its last four digits
    payrails_payment_id: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str | None] = mapped_column(String(128))
    card_network: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    threeds_outcome: Mapped[str | None] = mapped_column(String(32))

    transitions: Mapped[list[OrderTransition]] = relationship(
        back_populates="order", order_by="OrderTransition.id", lazy="raise"
    )

    __table_args__ = (
        Index("ix_orders_status_updated_at", "status", "updated_at"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
        CheckConstraint("amount_value > 0", name="amount_positive"),
        CheckConstraint(
            "captured_value >= 0 AND captured_value <= amount_value", name="captured_in_range"
        ),
        CheckConstraint(
            "refunded_value >= 0 AND refunded_value <= captured_value", name="refunded_in_range"
        ),
        CheckConstraint("card_last4 ~ '^[0-9]{4}$'", name="card_last4_four_digits"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
    )


class PaymentOperation(Base):
    """One Payrails write on an order's execution, stored with its key before the call."""

    __tablename__ = "payment_operations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[OperationKind] = mapped_column(value_enum(OperationKind, "kind"))
    state: Mapped[OperationState] = mapped_column(value_enum(OperationState, "state"))
    amount_value: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    final: Mapped[bool | None] = mapped_column(Boolean)  # a capture's: no capture may follow
    idempotency_key: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    command_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    payrails_execution_id: Mapped[str | None] = mapped_column(String(64))
    payrails_action_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    result_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_payment_operations_state_updated_at", "state", "updated_at"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
        CheckConstraint("amount_value > 0", name="amount_positive"),
        CheckConstraint("(kind = 'capture') = (final IS NOT NULL)", name="final_only_on_capture"),
    )


class PaymentAttempt(Base):
    """An earlier payment attempt of an order, written when the shopper starts the next one.

    The order holds its current attempt (``attempt``, ``execution_id``); this row keeps the
    execution of each attempt it replaced, so a late webhook or poll of that execution still
    finds its order, and changes nothing.
    """

    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    execution_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)  # why it was declined
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (UniqueConstraint("order_id", "attempt"),)


class IdempotencyKey(Base):
    """One UUIDv4 per (order, Payrails operation), stored before the call and reused on retry."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(32))
    key: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("order_id", "operation"),)


class InboxEntry(Base):
    """The inbox: one row per delivered event id, so duplicates are recognised."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_name: Mapped[str] = mapped_column(String(64))
    execution_id: Mapped[str | None] = mapped_column(String(64), index=True)
    merchant_reference: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime | None]
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    outcome: Mapped[str] = mapped_column(String(32))


class OrderTransition(Base):
    """Every status change of an order, with what caused it."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[OrderStatus] = mapped_column(order_status("from_status"))
    to_status: Mapped[OrderStatus] = mapped_column(order_status("to_status"))
    cause: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    order: Mapped[Order] = relationship(back_populates="transitions", lazy="raise")


class OutboxMessage(Base):
    """A message for commerce backends, written in the same transaction as the transition."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), unique=True)
    exchange: Mapped[str] = mapped_column(String(100))
    routing_key: Mapped[str] = mapped_column(String(100))
    body: Mapped[dict[str, Any]]
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    webhook_received_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
    )


class CheckoutSession(Base):
    """A shopper's checkout session: bound to one order, expiring; only the token's hash is kept."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]


class MerchantCommand(Base):
    """A command a commerce backend sent over RabbitMQ, by its own id: executed at most once."""

    __tablename__ = "merchant_commands"

    command_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    order_reference: Mapped[str] = mapped_column(String(64))
    # The outbox message that answered it: a repeated command is answered again with it.
    answer_message_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
