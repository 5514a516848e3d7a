"""JSON bodies at the edges: one parse, one precise error."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import InvalidPayload

# Where a lone UTF-16 surrogate can come from: a \uD800-\uDFFF escape, the CESU-8 bytes that
# json.loads decodes with surrogatepass, or a UTF-16/32 body (which holds NUL bytes).
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object; raise InvalidPayload saying what ``what`` is not.

    Text holding a lone surrogate is refused too: it is not Unicode, so it cannot be routed
    (AMQP short strings), stored (PostgreSQL text and JSONB) or logged as UTF-8.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidPayload(f"{what} is not a JSON object")
    if _MAYBE_SURROGATE.search(body) is not None and _has_lone_surrogate(data):
        raise InvalidPayload(f"{what} holds a lone surrogate, which is not text")
    return data
