"""Checkout sessions: what lets one shopper's browser pay one order, and nothing else.

A session is an opaque bearer token (256 random bits) bound to one order and expiring. Only its
SHA-256 is stored, so a database reader cannot replay it, and a lookup by hash needs no
constant-time comparison (an attacker who can time the index learns a hash prefix, not a token).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import CheckoutSession, Order
from shared.order_store import utcnow
from shared.state_machine import PAYABLE

TOKEN_BYTES = 32
TOKEN_MAX_LENGTH = 64  # token_urlsafe(32) is 43 characters; longer input is never a token
START_PATH = "/checkout/start"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session as handed to the commerce backend; the token is never stored."""

    token: str
    expires_at: datetime

    def checkout_url(self, public_base_url: str) -> str:
        return f"{public_base_url}{START_PATH}?session={self.token}"

    def to_json(self, public_base_url: str) -> dict[str, str]:
        return {
            "token": self.token,
            "expiresAt": self.expires_at.isoformat(),
            "checkoutUrl": self.checkout_url(public_base_url),
        }


@dataclass(frozen=True, slots=True)
class BoundSession:
    """A valid session as the checkout sees it: which order it may act on."""

    session_id: int
    order_id: int
    order_reference: str
    customer_reference: str
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def is_payable(order: Order) -> bool:
    return order.status in PAYABLE


async def issue_session(session: AsyncSession, order: Order, ttl_seconds: float) -> IssuedSession:
    """A fresh session for ``order`` (earlier ones stay valid until they expire). No commit."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    session.add(
        CheckoutSession(token_hash=token_hash(token), order_id=order.id, expires_at=expires_at)
    )
    order.updated_at = utcnow()  # the order's checkout window restarts with each session
    await session.flush()
    return IssuedSession(token, expires_at)


async def resolve_session(session: AsyncSession, token: str) -> BoundSession | None:
    """The unexpired session this token names, or None (unknown, expired or malformed)."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    row = (
        await session.execute(
            select(
                CheckoutSession.id,
                CheckoutSession.order_id,
                Order.reference,
                Order.customer_reference,
                CheckoutSession.expires_at,
            )
            .join(Order, Order.id == CheckoutSession.order_id)
            .where(CheckoutSession.token_hash == token_hash(token))
        )
    ).one_or_none()
    if row is None or row.expires_at <= utcnow():
        return None
    return BoundSession(row.id, row.order_id, row.reference, row.customer_reference, row.expires_at)
