"""Which Payrails webhook events we reconcile, which we only store: the one list of event types.

The ingress enqueues every correctly signed delivery whatever its name; the worker asks
``handling`` what to do with each one, and labels its metrics with the names registered here
(any other name is counted as ``other``, so the label set stays closed). The sandbox sends its
webhooks under these same names.

An entry is keyed by the event name and a ``details.action`` value, or ``ANY_ACTION`` for every
action (and for a body without one). An entry for a specific action wins over the name's
``ANY_ACTION`` entry. A name with no entry at all is stored, like the registered stored ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Handling(StrEnum):
    """What the worker does with one event."""

    RECONCILE = "reconcile"  # re-poll its execution and apply it to the order
    STORE = "store"  # record it in the inbox (outcome "ignored") and ack it; nothing else


ANY_ACTION: None = None

# The events the sandbox sends.
ACTION_COMPLETED = "executionActionCompleted"
ACTION_PENDING = "executionActionPending"

REGISTRY: Mapping[tuple[str, str | None], Handling] = MappingProxyType(
    {
        (ACTION_COMPLETED, ANY_ACTION): Handling.RECONCILE,
        (ACTION_PENDING, ANY_ACTION): Handling.RECONCILE,  # the sandbox's 3-D Secure pause
        ("executionActionUpdated", ANY_ACTION): Handling.RECONCILE,
        ("executionCreated", ANY_ACTION): Handling.STORE,
        ("executionActionRequested", ANY_ACTION): Handling.STORE,
        ("ruleEngineExecuted", ANY_ACTION): Handling.STORE,
        ("networkOffersEnrollmentCompleted", ANY_ACTION): Handling.STORE,
    }
)

EVENT_NAMES = frozenset(name for name, _ in REGISTRY)
OTHER_LABEL = "other"


def handling(name: str, action: str | None = None) -> Handling:
    """How the event ``name`` with ``details.action`` ``action`` is handled (STORE if unknown)."""
    if action is not None:
        found = REGISTRY.get((name, action))
        if found is not None:
            return found
    return REGISTRY.get((name, ANY_ACTION), Handling.STORE)


def event_label(name: str) -> str:
    """A bounded metric label for an event name: the name if registered, else ``other``."""
    return name if name in EVENT_NAMES else OTHER_LABEL
