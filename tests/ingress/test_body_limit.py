"""Bodies over WEBHOOK_MAX_BODY_BYTES get 413 before the ingress has read them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ingress.signature import sign
from ingress.webhook_app import WEBHOOK_PATH
from shared.messaging import Names
from tests.ingress.conftest import Client, StartIngress, post_signed
from tests.settings import Settings

LIMIT = 1024


@pytest.fixture
async def small_client(
    ingress_settings: Settings, topology: Names, start_ingress: StartIngress
) -> Client:
    return await start_ingress(
        ingress_settings.model_copy(update={"webhook_max_body_bytes": LIMIT})
    )


def padded(size: int) -> bytes:
    """A valid event body of exactly ``size`` bytes."""
    head, tail = b'{"event":"e","pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def raw_status(client: Client, head: bytes, first_bytes: bytes) -> int:
    """Send a request head and only the start of its body; return the status that comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head + first_bytes)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_content_length_over_the_limit_is_413_without_sending_the_body(
    small_client: Client,
) -> None:
    head = (
        b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nX-Signature: AAAA\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    )
    assert await raw_status(small_client, head, b"{") == 413


async def test_chunked_body_over_the_limit_is_413_while_more_is_still_coming(
    small_client: Client,
) -> None:
    head = (
        b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nX-Signature: AAAA\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (LIMIT + 1, b"x" * (LIMIT + 1))
    assert await raw_status(small_client, head, chunk) == 413


async def test_signed_body_exactly_at_the_limit_is_accepted(
    small_client: Client, ingress_settings: Settings
) -> None:
    body = padded(LIMIT)
    assert (await post_signed(small_client, body, ingress_settings)).status == 200


async def test_signed_body_one_byte_over_the_limit_is_413(
    small_client: Client, ingress_settings: Settings
) -> None:
    body = padded(LIMIT + 1)
    response = await post_signed(small_client, body, ingress_settings)
    assert response.status == 413
    assert (await response.json())["reason"] == "body_too_large"


async def test_chunked_signed_body_within_the_limit_is_accepted(
    small_client: Client, ingress_settings: Settings
) -> None:
    body = padded(LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    signature = sign(body, ingress_settings.payrails_webhook_keys[0])
    response = await small_client.post(
        WEBHOOK_PATH, data=chunks(), headers={"X-Signature": signature}
    )
    assert response.status == 200
