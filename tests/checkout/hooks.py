"""Pre-authorize hook classes that tests name in PRE_AUTHORIZE_HOOK."""

from __future__ import annotations

from shared.db.models import Order
from worker.preauthorize import Decision

DENIAL_REASON = "blocked by the configured test hook"


class DenyEverything:
    """Denies every order, as a fraud check that trusts nobody would."""

    async def check(self, order: Order) -> Decision:
        return Decision.deny(DENIAL_REASON)


class NeedsArguments:
    """Cannot be built from a dotted path: it wants a constructor argument."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    async def check(self, order: Order) -> Decision:
        return Decision.allow()


class NoCheck:
    """Has no ``check`` method at all."""
