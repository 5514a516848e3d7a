"""Scenario sizes: short in ``make test``, full under CHAOS_FULL=1 (``make chaos``)."""

from __future__ import annotations

import os

FULL = os.environ.get("CHAOS_FULL") == "1"


def size(short: int, full: int) -> int:
    """The short size in ``make test``, the full size under CHAOS_FULL=1."""
    return full if FULL else short
