"""Pure verification of Payrails' X-Signature: base64(HMAC-SHA256(key, raw body))."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from base64 import b64encode
from collections.abc import Sequence
from enum import StrEnum

from shared.config import WebhookKey
from shared.errors import InvalidSignature

SIGNATURE_HEADER = "X-Signature"
DIGEST_SIZE = hashlib.sha256().digest_size


class SignatureFault(StrEnum):
    """Why a signature was refused; also the metric's reason label."""

    MISSING = "signature_missing"
    EMPTY = "signature_empty"
    NOT_BASE64 = "signature_not_base64"
    WRONG_LENGTH = "signature_wrong_length"
    MISMATCH = "signature_mismatch"


class SignatureRejected(InvalidSignature):
    """An InvalidSignature that names its precise fault."""

    def __init__(self, fault: SignatureFault) -> None:
        super().__init__(fault.value)
        self.fault = fault


def parse_signature(header: str | None) -> bytes:
    """The 32 digest bytes carried by an X-Signature header value."""
    if header is None:
        raise SignatureRejected(SignatureFault.MISSING)
    value = header.strip()
    if not value:
        raise SignatureRejected(SignatureFault.EMPTY)
    try:  # b64decode(value, validate=True), without its layers of checks
        digest = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
        raise SignatureRejected(SignatureFault.NOT_BASE64) from exc
    if len(digest) != DIGEST_SIZE:
        raise SignatureRejected(SignatureFault.WRONG_LENGTH)
    return digest


def sign(body: bytes, key: WebhookKey) -> str:
    """The X-Signature value Payrails sends for ``body`` under ``key``."""
    return b64encode(hmac.digest(key.material, body, "sha256")).decode()


@functools.lru_cache(maxsize=16)  # the configured keys: a handful
def _keyed(material: bytes) -> hmac.HMAC:
    """The standard library's HMAC-SHA256 under ``material``, set up once per key.

    Never updated: each verification works on a ``copy()``, which skips hashing the key pads
    again (``hmac.digest`` would redo that on every call).
    """
    return hmac.new(material, digestmod=hashlib.sha256)


def verify_signature(body: bytes, header: str | None, keys: Sequence[WebhookKey]) -> int:
    """The index of the key that signed ``body``; raise SignatureRejected otherwise.

    Every key is tried, each with a constant-time compare, so the time taken does not reveal
    which key (if any) matched.
    """
    expected = parse_signature(header)
    matched = -1
    for index, key in enumerate(keys):
        mac = _keyed(key.material).copy()
        mac.update(body)
        if hmac.compare_digest(expected, mac.digest()):
            matched = index if matched < 0 else matched
    if matched < 0:
        raise SignatureRejected(SignatureFault.MISMATCH)
    return matched
