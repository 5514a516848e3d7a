"""RabbitMQ names, the topology (declared idempotently, in one place) and confirmed publishing.

Every name takes ``AMQP_NAME_PREFIX`` in front, so test runs and environments sharing one broker
never see each other's messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, DeliveryMode, ExchangeType
from aio_pika.connection import make_url
from pamqp.commands import Basic
from prometheus_client import Counter, Histogram

from shared import metrics
from shared.amqp_url import AmqpUrl
from shared.backoff import Backoff
from shared.config import BrokerSettings, TopologySettings
from shared.errors import PublishError

C = TypeVar("C", bound=aio_pika.abc.AbstractConnection)

DEFAULT_EXCHANGE_LABEL = "(default)"  # metric label of the nameless default exchange

# Header names shared by producers and consumers.
HDR_EVENT_NAME = "x-event-name"
HDR_EVENT_ID = "x-event-id"
HDR_RECEIVED_AT = "x-received-at"
HDR_KEY_INDEX = "x-signature-key-index"
HDR_ATTEMPT = "x-attempt"
HDR_REASON = "x-dead-letter-reason"
HDR_SOURCE_QUEUE = "x-source-queue"
HDR_FAILED_AT = "x-failed-at"
# The routing key a message first arrived with: a delay tier or the dead letters re-route it by
# queue name, and a queue that holds several kinds (merchant commands) tells them apart by it.
HDR_ROUTING_KEY = "x-routing-key"

# Headers the broker adds when it dead-letters; they describe that hop, not our copy.
BROKER_DEATH_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-last-death-exchange",
        "x-delivery-count",
    }
)

ROUTING_AUTHORIZE = "authorize"
ROUTING_CREATE_ORDER = "order.create"
# Commerce backends' operations on an order after authorization (the merchant commands queue).
ROUTING_CAPTURE_ORDER = "order.capture"
ROUTING_CANCEL_ORDER = "order.cancel"
ROUTING_REFUND_ORDER = "order.refund"
MERCHANT_ROUTING_KEYS = (
    ROUTING_CREATE_ORDER,
    ROUTING_CAPTURE_ORDER,
    ROUTING_CANCEL_ORDER,
    ROUTING_REFUND_ORDER,
)
# Internal: execute one stored payment operation (its id) against Payrails.
ROUTING_EXECUTE_OPERATION = "operation.execute"


@dataclass(frozen=True, slots=True)
class Names:
    """Every exchange and queue name, with the environment's prefix applied."""

    prefix: str = ""

    def _n(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def webhooks_exchange(self) -> str:
        return self._n("payrails.webhooks")

    @property
    def events_queue(self) -> str:
        return self._n("reconciler.webhook-events")

    @property
    def dead_letters_queue(self) -> str:
        return self._n("reconciler.dead-letters")

    @property
    def commands_exchange(self) -> str:
        return self._n("payments.commands")

    @property
    def authorize_queue(self) -> str:
        return self._n("reconciler.authorize-commands")

    @property
    def merchant_commands_queue(self) -> str:
        return self._n("reconciler.merchant-commands")

    @property
    def operations_queue(self) -> str:
        return self._n("reconciler.operation-commands")

    @property
    def orders_exchange(self) -> str:
        return self._n("orders")

    @property
    def orders_unrouted_exchange(self) -> str:
        return self._n("orders.unrouted")

    @property
    def orders_unrouted_queue(self) -> str:
        return self._n("orders.unrouted")

    def retry_queue(self, source_queue: str, delay_seconds: float) -> str:
        """The delay queue for one tier: ``reconciler.retry.<source>.<ms>ms``."""
        short = source_queue.removeprefix(self.prefix).removeprefix("reconciler.")
        return self._n(f"reconciler.retry.{short}.{int(delay_seconds * 1000)}ms")

    @property
    def work_queues(self) -> tuple[str, ...]:
        return (
            self.events_queue,
            self.authorize_queue,
            self.merchant_commands_queue,
            self.operations_queue,
        )

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> Names:
        return cls(settings.amqp_name_prefix)


# Quorum queues dead-letter at most once by default: a message whose target is briefly
# unavailable (a leader election, a restart) would be dropped on expiry or past the delivery
# limit. At least once keeps it until the target confirms; the broker requires reject-publish
# overflow for that. Handlers are idempotent, so a rare second copy is harmless.
AT_LEAST_ONCE_DEAD_LETTERING: dict[str, Any] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


async def declare_topology(channel: AbstractChannel, settings: TopologySettings) -> Names:
    """Declare every exchange, queue and binding; safe to run any number of times."""
    names = Names.from_settings(settings)
    dead = await channel.declare_queue(
        names.dead_letters_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    work_args: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.amqp_delivery_limit,
        # A bug that rejects, or a message redelivered past the limit, lands in the parking lot.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead.name,
        **AT_LEAST_ONCE_DEAD_LETTERING,
    }
    webhooks = await channel.declare_exchange(
        names.webhooks_exchange, ExchangeType.TOPIC, durable=True
    )
    events = await channel.declare_queue(names.events_queue, durable=True, arguments=work_args)
    await events.bind(webhooks, routing_key="#")

    commands = await channel.declare_exchange(
        names.commands_exchange, ExchangeType.DIRECT, durable=True
    )
    authorize = await channel.declare_queue(
        names.authorize_queue, durable=True, arguments=work_args
    )
    await authorize.bind(commands, routing_key=ROUTING_AUTHORIZE)
    merchant = await channel.declare_queue(
        names.merchant_commands_queue, durable=True, arguments=work_args
    )
    for routing_key in MERCHANT_ROUTING_KEYS:
        await merchant.bind(commands, routing_key=routing_key)
    operations = await channel.declare_queue(
        names.operations_queue, durable=True, arguments=work_args
    )
    await operations.bind(commands, routing_key=ROUTING_EXECUTE_OPERATION)

    for source in names.work_queues:
        for delay in settings.worker_retry_delays_seconds:
            await channel.declare_queue(
                names.retry_queue(source, delay),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": source,
                    **AT_LEAST_ONCE_DEAD_LETTERING,
                },
            )

    # Unrouted order messages (no commerce backend bound yet) are kept, not returned or lost.
    unrouted = await channel.declare_exchange(
        names.orders_unrouted_exchange, ExchangeType.FANOUT, durable=True
    )
    unrouted_q = await channel.declare_queue(
        names.orders_unrouted_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await unrouted_q.bind(unrouted)
    await channel.declare_exchange(
        names.orders_exchange,
        ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": unrouted.name},
    )
    return names


async def publish_confirmed(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    message: aio_pika.Message,
    *,
    timeout: float,
) -> None:
    """Publish an aio-pika message persistent and mandatory; see ``publish_frames``."""
    await publish_frames(
        channel, exchange, routing_key, message.body, message.properties, timeout=timeout
    )


async def publish_frames(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Basic.Properties,
    *,
    timeout: float,
) -> None:
    """Publish mandatory and return only once the broker has confirmed it.

    The channel must be opened with ``publisher_confirms=True, on_return_raises=True``. Raises
    PublishError for a return, a nack, a timeout or a dropped connection: never hangs past
    ``timeout``. Goes through aiormq's ``basic_publish`` (the layer under aio-pika's
    ``Exchange.publish``) with prebuilt properties: the same guarantees for fewer objects.
    """
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError("channel is closed")
            underlay = await channel.get_underlay_channel()
            await underlay.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
            )
    except TimeoutError as exc:
        raise publish_failed(exchange, "timeout") from exc
    except aiormq.exceptions.PublishError as exc:  # Basic.Return: unroutable
        raise publish_failed(exchange, "returned") from exc
    except aiormq.exceptions.DeliveryError as exc:  # Basic.Nack
        raise publish_failed(exchange, "nacked") from exc
    except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
        raise publish_failed(exchange, "disconnected") from exc
    confirmed, seconds = confirmed_metrics(exchange)
    confirmed.inc()
    seconds.observe(time.perf_counter() - started)


def publish_failed(exchange: str, outcome: str) -> PublishError:
    """Count a publish that was not confirmed, and the error that says why."""
    metrics.BROKER_PUBLISHES.labels(exchange or DEFAULT_EXCHANGE_LABEL, outcome).inc()
    return PublishError(outcome)


@cache
def confirmed_metrics(exchange: str) -> tuple[Counter, Histogram]:
    """The labelled children for a confirmed publish, looked up once per exchange."""
    label = exchange or DEFAULT_EXCHANGE_LABEL
    return (
        metrics.BROKER_PUBLISHES.labels(label, "confirmed"),
        metrics.BROKER_PUBLISH_SECONDS.labels(label),
    )


def persistent_properties(
    *,
    message_id: str,
    headers: dict[str, Any],
    content_type: str = "application/json",
    timestamp: datetime | None = None,
) -> Basic.Properties:
    """AMQP properties of a persistent message with a stable id."""
    return Basic.Properties(
        content_type=content_type,
        delivery_mode=int(DeliveryMode.PERSISTENT),
        message_id=message_id,
        headers=headers,
        timestamp=timestamp,
    )


async def connect(
    url: str, *, name: str | None = None, timeout: float | None = None, **options: Any
) -> aio_pika.abc.AbstractConnection:
    """``aio_pika.connect``, closing the attempt when it fails (see ``_opened``)."""
    AmqpUrl.from_url(url)  # ConfigError for an option some process would not honour
    return await _opened(
        aio_pika.Connection(make_url(url), **_properties(name), **options), timeout
    )


async def connect_robust(
    url: str, *, name: str | None = None, timeout: float | None = None, **options: Any
) -> aio_pika.abc.AbstractRobustConnection:
    """``aio_pika.connect_robust``, closing the attempt when it fails (see ``_opened``)."""
    AmqpUrl.from_url(url)  # ConfigError for an option some process would not honour
    connection = aio_pika.RobustConnection(make_url(url), **_properties(name), **options)
    return await _opened(connection, timeout)


def reconnect_backoff(settings: BrokerSettings) -> Backoff:
    """Pauses between reconnect attempts: from AMQP_RECONNECT_INTERVAL_SECONDS, doubling up to
    AMQP_RECONNECT_MAX_SECONDS, jittered so that processes cut off together come back spread out.
    """
    return Backoff(
        start=settings.amqp_reconnect_interval_seconds, cap=settings.amqp_reconnect_max_seconds
    )


def _properties(name: str | None) -> dict[str, Any]:
    return {"client_properties": {"connection_name": name}} if name else {}


async def _opened(connection: C, timeout: float | None) -> C:
    """Connect, or close the attempt and re-raise.

    aio-pika drops a connection whose first ``connect()`` raised without closing it; its
    ``__del__`` then schedules ``close()`` on whatever loop is current, and with none running
    that coroutine is never awaited.
    """
    try:
        await connection.connect(timeout=timeout)
    except BaseException:
        await connection.close()
        raise
    return connection


async def open_channel(connection: aio_pika.abc.AbstractConnection) -> AbstractChannel:
    """A channel with publisher confirms on and returns raised as errors."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)
