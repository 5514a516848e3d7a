"""The capture mode of an order: fixed when its first execution is about to be created.

``PAYRAILS_CAPTURE_MODE`` says who captures a new order's authorization: Payrails at once
(``instant``, its default) or the merchant (``manual``, through the capture API and commands).
The mode is stored on the order in the transaction that stores the create-execution key, before
Payrails is called, and a retry of that call sends the stored mode again, so the order always
holds the mode its execution was created with, even when the setting changes in between. The
money rules read it (``CaptureNotManual``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Order
from shared.operation_states import CaptureMode
from shared.payment_attempts import stored_key

# workflowConfigOverride.captureMode values (payrails-api-facts 2.2), by our mode.
PAYRAILS_CAPTURE_MODES: dict[CaptureMode, str] = {
    CaptureMode.INSTANT: "Instant",
    CaptureMode.MANUAL: "manual",
}


async def fix_capture_mode(
    session: AsyncSession, order: Order, configured: CaptureMode, key_operation: str
) -> CaptureMode:
    """The order's capture mode: ``configured`` when no execution key was stored for it yet.

    ``order`` must be locked in ``session`` (its row lock serializes concurrent place-orders);
    call before the key is stored. No commit.
    """
    if await stored_key(session, order.id, key_operation) is None and order.execution_id is None:
        order.capture_mode = configured
    return order.capture_mode
