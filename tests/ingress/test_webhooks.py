"""POST /webhooks/payrails against the real RabbitMQ: every answer the ingress can give."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import datetime, timedelta

import pytest
from aio_pika import Message
from aio_pika.abc import AbstractRobustConnection, DeliveryMode

from ingress.keys import BROKER
from ingress.webhook_app import WEBHOOK_PATH
from shared.config import WebhookKey
from shared.errors import PublishError
from shared.events import derive_event_id, parse_object
from shared.messaging import (
    HDR_EVENT_ID,
    HDR_EVENT_NAME,
    HDR_KEY_INDEX,
    HDR_RECEIVED_AT,
    Names,
    open_channel,
    publish_confirmed,
)
from tests.ingress.conftest import (
    EACH_PUBLISHER,
    Client,
    StartIngress,
    post_signed,
    queue_depth,
    webhook_body,
)
from tests.settings import Settings
from tests.waiting import sample, wait_until

pytestmark = EACH_PUBLISHER

COALESCED = "recon_broker_publishes_coalesced_total"


async def test_valid_webhook_arrives_on_the_queue_with_the_exact_body_bytes(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    body = (
        b'{ "event":"executionActionCompleted",  "time":"t\\u00e9",\n'
        b'"details":{"execution":{"id":"e-9"}}}'
    )
    response = await post_signed(client, body, ingress_settings)
    assert response.status == 200

    async with amqp_connection.channel() as channel:
        queue = await channel.declare_queue(topology.events_queue, passive=True)
        message = await queue.get(timeout=5)
        await message.ack()
    assert message.body == body
    assert message.routing_key == "executionActionCompleted"
    assert message.exchange == topology.webhooks_exchange
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    event_id = derive_event_id(parse_object(body))
    assert message.message_id == event_id
    assert message.headers[HDR_EVENT_NAME] == "executionActionCompleted"
    assert message.headers[HDR_EVENT_ID] == event_id
    assert message.headers[HDR_KEY_INDEX] == 0
    received_at = datetime.fromisoformat(str(message.headers[HDR_RECEIVED_AT]))
    assert received_at.utcoffset() == timedelta(0)


async def test_body_with_an_explicit_id_is_published_under_that_id(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    response = await post_signed(client, webhook_body(id="evt_123"), ingress_settings)
    assert response.status == 200
    async with amqp_connection.channel() as channel:
        queue = await channel.declare_queue(topology.events_queue, passive=True)
        message = await queue.get(timeout=5)
        await message.ack()
    assert message.message_id == "evt_123"


async def test_ten_concurrent_identical_deliveries_are_each_confirmed_and_enqueued(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    """The same message_id in flight ten times at once (aio-pika #689) neither hangs nor drops.

    Each 200 follows a confirmed publish of that body: its own, or (for a copy that arrived
    while an identical one was in flight) that one's. So the body is enqueued one to ten times.
    """
    body = webhook_body()
    responses = await asyncio.gather(
        *(post_signed(client, body, ingress_settings) for _ in range(10))
    )
    assert [r.status for r in responses] == [200] * 10
    assert 1 <= await queue_depth(amqp_connection, topology.events_queue) <= 10


async def hold_in_flight(
    client: Client,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
    body: bytes,
    release: asyncio.Event,
) -> asyncio.Task[None]:
    """The first delivery of a storm, in flight on the ingress until ``release`` is set.

    It stands in the ingress's gate for its message id, as a publish awaiting its confirm does;
    once released it publishes ``body`` for real (persistent, mandatory, confirmed) through a
    channel of the test's own.
    """
    event_id = derive_event_id(parse_object(body))
    gate = client.app[BROKER].same_id

    async def publish_when_released() -> None:
        await release.wait()
        channel = await open_channel(amqp_connection)
        try:
            await publish_confirmed(
                channel,
                topology.webhooks_exchange,
                "executionActionCompleted",
                Message(body, message_id=event_id, delivery_mode=DeliveryMode.PERSISTENT),
                timeout=10,
            )
        finally:
            await channel.close()

    deadline = asyncio.get_running_loop().time() + 60
    held = asyncio.create_task(
        gate.publish(
            event_id,
            topology.webhooks_exchange,
            "executionActionCompleted",
            body,
            deadline=deadline,
            send=publish_when_released,
        )
    )
    await wait_until(lambda: gate.waiting(event_id) == 0)
    return held


async def storm(
    client: Client, settings: Settings, body: bytes, copies: int
) -> list[asyncio.Task[int]]:
    """``copies`` concurrent deliveries of ``body``, each task ending with its status."""

    async def deliver() -> int:
        response = await post_signed(client, body, settings)
        return int(response.status)

    tasks = [asyncio.create_task(deliver()) for _ in range(copies)]
    gate = client.app[BROKER].same_id
    event_id = derive_event_id(parse_object(body))
    await wait_until(lambda: gate.waiting(event_id) == copies)  # every copy waits behind it
    return tasks


async def test_another_webhook_is_answered_and_enqueued_while_32_identical_ones_are_held(
    patient_client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    storm_body, release = webhook_body(id="evt_storm"), asyncio.Event()
    held = await hold_in_flight(patient_client, topology, amqp_connection, storm_body, release)
    copies = await storm(patient_client, ingress_settings, storm_body, 32)

    other = await post_signed(patient_client, webhook_body(id="evt_other"), ingress_settings)

    assert other.status == 200
    assert not any(copy.done() for copy in copies)  # still held
    async with amqp_connection.channel() as channel:
        queue = await channel.declare_queue(topology.events_queue, passive=True)
        stored = await queue.get(timeout=5)
        await stored.ack()
    assert stored.message_id == "evt_other"
    release.set()
    await held
    assert await asyncio.gather(*copies) == [200] * 32


async def test_identical_deliveries_held_behind_one_in_flight_take_its_confirm_and_store_once(
    patient_client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    storm_body, release = webhook_body(id="evt_storm"), asyncio.Event()
    held = await hold_in_flight(patient_client, topology, amqp_connection, storm_body, release)
    copies = await storm(patient_client, ingress_settings, storm_body, 32)

    before = sample(COALESCED, exchange=topology.webhooks_exchange)

    release.set()  # the first delivery's publish is confirmed

    await held
    assert await asyncio.gather(*copies) == [200] * 32
    assert await queue_depth(amqp_connection, topology.events_queue) == 1
    coalesced = sample(
        "recon_broker_publishes_coalesced_total", exchange=topology.webhooks_exchange
    )
    assert coalesced == before + 32


async def test_identical_deliveries_held_behind_one_that_is_returned_are_each_503(
    patient_client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    """Nothing was stored, so no copy may be answered 200: each takes the first one's failure."""
    storm_body, release = webhook_body(id="evt_storm"), asyncio.Event()
    held = await hold_in_flight(patient_client, topology, amqp_connection, storm_body, release)
    copies = await storm(patient_client, ingress_settings, storm_body, 8)
    async with amqp_connection.channel() as channel:
        queue = await channel.declare_queue(topology.events_queue, passive=True)
        await queue.unbind(topology.webhooks_exchange, "#")

    before = sample(COALESCED, exchange=topology.webhooks_exchange)

    release.set()

    with pytest.raises(PublishError):
        await held
    assert await asyncio.gather(*copies) == [503] * 8
    coalesced = sample(
        "recon_broker_publishes_coalesced_total", exchange=topology.webhooks_exchange
    )
    assert coalesced == before + 8  # none published again


async def test_signature_under_any_configured_key_is_accepted_and_counted_by_key_index(
    topology: Names, ingress_settings: Settings, start_ingress: StartIngress
) -> None:
    keys = (WebhookKey(b"new-key"), WebhookKey(bytes.fromhex("44782def547aaa06")))
    settings = ingress_settings.model_copy(update={"payrails_webhook_keys": keys})
    client = await start_ingress(settings)
    before = sample("recon_webhook_signature_key_matches_total", key_index="1")

    response = await post_signed(client, webhook_body(), settings, key=1)

    assert response.status == 200
    assert sample("recon_webhook_signature_key_matches_total", key_index="1") == before + 1


async def test_missing_signature_is_401_and_nothing_is_enqueued(
    client: Client, topology: Names, amqp_connection: AbstractRobustConnection
) -> None:
    response = await client.post(WEBHOOK_PATH, data=webhook_body())
    assert response.status == 401
    assert (await response.json())["reason"] == "signature_missing"
    assert await queue_depth(amqp_connection, topology.events_queue) == 0


async def test_malformed_signatures_are_401_with_a_precise_reason(client: Client) -> None:
    cases = {
        "": "signature_empty",
        "   ": "signature_empty",
        "v1,!!!": "signature_not_base64",
        "not base64 at all": "signature_not_base64",
        "é": "signature_not_base64",
        base64.b64encode(b"short").decode(): "signature_wrong_length",
        base64.b64encode(b"x" * 33).decode(): "signature_wrong_length",
        base64.b64encode(b"x" * 32).decode(): "signature_mismatch",
    }
    for header, reason in cases.items():
        response = await client.post(
            WEBHOOK_PATH, data=webhook_body(), headers={"X-Signature": header}
        )
        assert response.status == 401, header
        assert (await response.json())["reason"] == reason, header


async def test_signature_over_different_bytes_is_401(
    client: Client, ingress_settings: Settings
) -> None:
    key = ingress_settings.payrails_webhook_keys[0].material
    signature = base64.b64encode(hmac.digest(key, webhook_body(), hashlib.sha256)).decode()
    tampered = webhook_body(event="executionActionPending")
    response = await client.post(WEBHOOK_PATH, data=tampered, headers={"X-Signature": signature})
    assert response.status == 401
    assert (await response.json())["reason"] == "signature_mismatch"


async def test_signed_body_that_is_not_a_payrails_event_is_400_with_reason_and_metric(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    cases = {
        b"not json": "payload_not_json",
        b"\xff\xfe": "payload_not_json",
        b"[1, 2]": "payload_not_object",
        b'{"time": "t"}': "payload_no_event",
        b'{"event": 7}': "payload_no_event",
        b'{"event": "\\ud800"}': "payload_not_text",
        b'{"event": "x", "id": "\\udfff"}': "payload_not_text",
        b'{"event": "x", "details": {"execution": {"id": "\xed\xa0\x80"}}}': "payload_not_text",
        '{"event": "x", "note": "\\ud800"}'.encode("utf-16"): "payload_not_text",
        b'{"event": "' + b"e" * 300 + b'"}': "payload_invalid",
        b"[" * 100_000: "payload_invalid",
    }
    for body, reason in cases.items():
        before = sample("recon_webhook_rejections_total", reason=reason)
        response = await post_signed(client, body, ingress_settings)
        assert response.status == 400, body[:20]
        assert (await response.json())["reason"] == reason, body[:20]
        assert sample("recon_webhook_rejections_total", reason=reason) == before + 1
    assert await queue_depth(amqp_connection, topology.events_queue) == 0


async def test_a_bug_of_ours_is_503_with_retry_after_a_metric_and_a_log_line(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(body: bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("ingress.webhooks.parse_event", broken)  # stands in for any defect
    before = sample("recon_webhook_requests_total", outcome="internal_error")

    response = await post_signed(client, webhook_body(), ingress_settings)

    assert response.status == 503
    assert response.headers["Retry-After"]
    assert (await response.json())["error"] == "internal_error"
    assert sample("recon_webhook_requests_total", outcome="internal_error") == before + 1
    assert await queue_depth(amqp_connection, topology.events_queue) == 0


async def test_unroutable_publish_is_503_with_retry_after(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    async with amqp_connection.channel() as channel:
        queue = await channel.declare_queue(topology.events_queue, passive=True)
        await queue.unbind(topology.webhooks_exchange, "#")

    response = await post_signed(client, webhook_body(), ingress_settings)

    assert response.status == 503
    assert response.headers["Retry-After"]
    assert (await response.json())["reason"] == "returned"


async def test_nacked_publish_is_503(
    client: Client,
    ingress_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
) -> None:
    async with amqp_connection.channel() as channel:
        events = await channel.declare_queue(topology.events_queue, passive=True)
        await events.unbind(topology.webhooks_exchange, "#")
        full = await channel.declare_queue(
            f"{topology.prefix}full",
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        await full.bind(topology.webhooks_exchange, "#")

        response = await post_signed(client, webhook_body(), ingress_settings)
        await full.delete(if_unused=False, if_empty=False)

    assert response.status == 503
    assert (await response.json())["reason"] == "nacked"
