"""JSON bodies at the edges: one parse, one precise error."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InvalidPayload


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object; raise InvalidPayload saying what ``what`` is not."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidPayload(f"{what} is not a JSON object")
    return data
