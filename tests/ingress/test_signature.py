"""ingress.signature: the pure X-Signature parser and verifier."""

from __future__ import annotations

import base64
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.signature import (
    KeyedSha256,
    SignatureFault,
    SignatureRejected,
    parse_signature,
    sign,
    verify_signature,
)
from shared.config import WebhookKey
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


@given(material=st.binary(max_size=200), body=st.binary(max_size=300))
def test_the_precomputed_hmac_equals_the_standard_librarys(material: bytes, body: bytes) -> None:
    assert KeyedSha256(material).digest(body) == hmac.digest(material, body, "sha256")
