"""Merchant API keys: several at once (rotation), kept only as hashes, compared in constant time.

Hashing first gives every comparison the same length. The requests are checked against the
digests alone; once they exist, the plain keys are dropped: the app's settings keep none, and
``python -m ingress`` removes MERCHANT_API_KEYS from its environment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web

from ingress.checkout.service import MerchantUnauthorized
from shared import metrics
from shared.config import Secret

SCHEME = "bearer"  # compared case-insensitively, as HTTP auth schemes are
MAX_KEY_LENGTH = 512  # longer is never one of ours; refuse before hashing


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The accepted keys' SHA-256 digests; ``matches`` checks every one, without early exit."""

    def __init__(self, keys: Iterable[Secret]) -> None:
        self._digests = tuple(_digest(key.reveal()) for key in keys)
        if not self._digests:
            raise ValueError("at least one merchant API key is required")

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} keys>)"

    def matches(self, presented: str) -> bool:
        digest = _digest(presented)
        found = False
        for accepted in self._digests:
            found |= hmac.compare_digest(digest, accepted)
        return found


def _refuse(reason: str) -> MerchantUnauthorized:
    metrics.MERCHANT_AUTH_FAILURES.labels(reason).inc()
    return MerchantUnauthorized(
        "send a merchant API key as 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": 'Bearer realm="merchant"'},
    )


def require_merchant(request: web.Request, keys: ApiKeys) -> None:
    """Raise 401 unless the request carries one of the merchant API keys."""
    header = request.headers.get("Authorization")
    if header is None:
        raise _refuse("missing")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != SCHEME or not key or len(key) > MAX_KEY_LENGTH:
        raise _refuse("malformed")
    if not keys.matches(key):
        raise _refuse("invalid")
