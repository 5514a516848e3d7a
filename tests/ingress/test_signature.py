"""ingress.signature: the pure X-Signature parser and verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ingress.signature import (
    SignatureFault,
    SignatureRejected,
    parse_signature,
    sign,
    verify_signature,
)
from shared.config import WebhookKey, parse_webhook_keys
from shared.errors import InvalidSignature

KEYS = (WebhookKey(b"old"), WebhookKey(b"new"))


def test_signature_from_any_key_returns_that_key_index() -> None:
    body = b'{"event":"x"}'
    assert verify_signature(body, sign(body, KEYS[0]), KEYS) == 0
    assert verify_signature(body, sign(body, KEYS[1]), KEYS) == 1


def test_surrounding_whitespace_is_ignored() -> None:
    body = b"{}"
    assert verify_signature(body, f"  {sign(body, KEYS[1])} ", KEYS) == 1


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        (None, SignatureFault.MISSING),
        ("", SignatureFault.EMPTY),
        ("v1,!!!", SignatureFault.NOT_BASE64),
        ("abc", SignatureFault.NOT_BASE64),
        ("ü" * 44, SignatureFault.NOT_BASE64),
        (base64.b64encode(b"\x00" * 31).decode(), SignatureFault.WRONG_LENGTH),
        (base64.b64encode(b"\x00" * 32).decode(), SignatureFault.MISMATCH),
        (sign(b"{}", WebhookKey(b"someone-else")), SignatureFault.MISMATCH),
    ],
)
def test_bad_header_raises_invalid_signature_naming_the_fault(
    header: str | None, fault: SignatureFault
) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify_signature(b"{}", header, KEYS)
    assert isinstance(caught.value, SignatureRejected)
    assert caught.value.fault is fault


@given(st.text())
def test_parser_either_returns_32_bytes_or_raises_signature_rejected(header: str) -> None:
    try:
        digest = parse_signature(header)
    except SignatureRejected:
        return
    assert len(digest) == 32


@given(st.binary(), st.binary(min_size=1))
def test_any_body_signed_with_a_key_verifies(body: bytes, material: bytes) -> None:
    keys = (WebhookKey(b"other"), WebhookKey(material))
    assert verify_signature(body, sign(body, keys[1]), keys) in (0, 1)


# A PAYRAILS_WEBHOOK_SECRETS entry and the key bytes it stands for: ``hex:`` or plain text, both
# within SHA-256's 64-byte block and longer (HMAC then hashes the key first).
HEX_KEYS = st.one_of(st.binary(min_size=1, max_size=64), st.binary(min_size=65, max_size=300)).map(
    lambda raw: (f"hex:{raw.hex()}", raw)
)
TEXT_KEYS = (
    st.one_of(st.text(min_size=1, max_size=64), st.text(min_size=65, max_size=200))
    .filter(lambda t: "," not in t and t == t.strip() and not t.startswith("hex:"))
    .map(lambda t: (t, t.encode()))
)


@given(
    entry=st.one_of(HEX_KEYS, TEXT_KEYS),
    body=st.binary(max_size=2048),
    position=st.integers(0, 31),
    flip=st.integers(1, 255),
)
def test_the_verifier_agrees_with_the_standard_librarys_hmac(
    entry: tuple[str, bytes], body: bytes, position: int, flip: int
) -> None:
    spec, material = entry
    assume(material != b"other")
    keys = parse_webhook_keys(f"other,{spec}")
    assert keys[1].material == material
    digest = hmac.new(material, body, hashlib.sha256).digest()
    assert verify_signature(body, base64.b64encode(digest).decode(), keys) == 1
    wrong = bytearray(digest)
    wrong[position] ^= flip
    with pytest.raises(SignatureRejected) as caught:
        verify_signature(body, base64.b64encode(wrong).decode(), keys)
    assert caught.value.fault is SignatureFault.MISMATCH
