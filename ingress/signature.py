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


class KeyedSha256:
    """HMAC-SHA256 (RFC 2104) under one key, its inner and outer pads hashed once, not per body.

    ``hmac.digest`` sets the key up on every call, which costs more than hashing a webhook.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, material: bytes) -> None:
        if len(material) > _BLOCK:
            material = hashlib.sha256(material).digest()
        padded = material.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(padded.translate(_INNER_PAD))
        self._outer = hashlib.sha256(padded.translate(_OUTER_PAD))

    def digest(self, body: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_BLOCK = hashlib.sha256().block_size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=16)  # the configured keys: a handful
def _keyed(material: bytes) -> KeyedSha256:
    return KeyedSha256(material)


def verify_signature(body: bytes, header: str | None, keys: Sequence[WebhookKey]) -> int:
    """The index of the key that signed ``body``; raise SignatureRejected otherwise.

    Every key is tried, each with a constant-time compare, so the time taken does not reveal
    which key (if any) matched.
    """
    expected = parse_signature(header)
    matched = -1
    for index, key in enumerate(keys):
        if hmac.compare_digest(_keyed(key.material).digest(body), expected):
            matched = index if matched < 0 else matched
    if matched < 0:
        raise SignatureRejected(SignatureFault.MISMATCH)
    return matched
