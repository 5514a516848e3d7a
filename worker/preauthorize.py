"""The pre-authorize hook: fraud, inventory or any other check that may stop an authorize.

The authorize consumer asks the hook before it calls Payrails. A denial moves the order to
``payment_failed`` with the hook's reason and Payrails is never called. The composition root
passes the hook in; the default allows everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.db.models import Order


@dataclass(frozen=True, slots=True)
class Decision:
    """The hook's answer: allowed, or denied with a short reason stored on the order."""

    allowed: bool
    reason: str | None = None

    @classmethod
    def allow(cls) -> Decision:
        return cls(True)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(False, reason)


class PreAuthorizeHook(Protocol):
    """Decides whether an order may be authorized. Must not change the order."""

    async def check(self, order: Order) -> Decision: ...


class AllowAll:
    """The default hook: every order may be authorized."""

    async def check(self, order: Order) -> Decision:
        return Decision.allow()
