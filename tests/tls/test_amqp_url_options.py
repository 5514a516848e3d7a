"""The same AMQP_URL means the same thing to the worker and to the webhook ingress, over TLS.

Each URL form goes through both paths against a TLS-only RabbitMQ node the tests start: the
worker's (aio-pika, as ``python -m worker`` connects) and the webhook ingress's (the real app,
whose publishing connection is its own). A private CA, a client certificate, no verification,
and the x509 login (SASL EXTERNAL, no password: the node has no user but the certificate's).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from aio_pika.exceptions import AMQPConnectionError
from structlog.testing import capture_logs

from ingress.publisher import Endpoint, open_publisher
from shared.errors import ConfigError
from shared.messaging import Names, connect, connect_robust, declare_topology, open_channel
from tests.ingress.conftest import Client, StartIngress, admin_get, post_signed, webhook_body
from tests.settings import Settings
from tests.tls.conftest import SettingsFor
from tests.tls_broker import TlsNode
from tests.waiting import wait_until

pytestmark = pytest.mark.tls


def private_ca(node: TlsNode) -> str:
    return node.url(cafile=str(node.pki.ca))


def client_certificate(node: TlsNode) -> str:
    pki = node.pki
    return node.url(cafile=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key))


def no_verification(node: TlsNode) -> str:
    return node.url(no_verify_ssl="1")


def x509_login(node: TlsNode) -> str:
    pki = node.pki
    return node.url(
        login=False,
        auth="external",
        cafile=str(pki.ca),
        certfile=str(pki.client_cert),
        keyfile=str(pki.client_key),
    )


def another_ca(node: TlsNode) -> str:
    return node.url(cafile=str(node.pki.other_ca))


FORMS: dict[str, Callable[[TlsNode], str]] = {
    "private-ca": private_ca,
    "client-certificate": client_certificate,
    "no-verify": no_verification,
    "x509-login": x509_login,
}


async def ready(client: Client) -> bool:
    return (await admin_get(client, "/readyz"))[0] == 200


async def take_one(node: TlsNode, queue: str) -> bytes | None:
    """The body of one message taken from ``queue`` on the node, or None when it is empty."""
    connection = await connect(private_ca(node), name="tls-tests")
    try:
        channel = await connection.channel()
        message = await (await channel.get_queue(queue)).get(no_ack=True, fail=False)
        return None if message is None else message.body
    finally:
        await connection.close()


@pytest.mark.parametrize("form", FORMS)
async def test_the_worker_connects_and_declares_its_topology_through(
    form: str, tls_node: TlsNode, settings_for: SettingsFor
) -> None:
    settings = settings_for(FORMS[form](tls_node))
    connection = await connect_robust(
        settings.amqp_url.reveal(),
        name="worker",
        reconnect_interval=settings.amqp_reconnect_interval_seconds,
    )
    try:
        names = await declare_topology(await open_channel(connection), settings)
        assert await take_one(tls_node, names.events_queue) is None  # declared, and empty
    finally:
        await connection.close()


@pytest.mark.parametrize("form", FORMS)
async def test_the_webhook_ingress_becomes_ready_and_publishes_through(
    form: str, tls_node: TlsNode, settings_for: SettingsFor, start_ingress: StartIngress
) -> None:
    settings = settings_for(FORMS[form](tls_node))
    client = await start_ingress(settings, wait_ready=False)
    await wait_until(lambda: ready(client))
    body = webhook_body()

    response = await post_signed(client, body, settings)

    assert response.status == 200
    assert await take_one(tls_node, Names.from_settings(settings).events_queue) == body


async def test_a_broker_certificate_from_another_ca_fails_the_worker_s_connect(
    tls_node: TlsNode, settings_for: SettingsFor
) -> None:
    settings = settings_for(another_ca(tls_node))

    with pytest.raises(AMQPConnectionError):
        await connect_robust(settings.amqp_url.reveal(), name="worker", timeout=10)


async def test_a_broker_certificate_from_another_ca_keeps_the_webhook_ingress_unready(
    tls_node: TlsNode, settings_for: SettingsFor, start_ingress: StartIngress
) -> None:
    settings = settings_for(another_ca(tls_node))
    with capture_logs() as logs:
        client = await start_ingress(settings, wait_ready=False)
        await wait_until(lambda: any(e["event"] == "broker.connect_failed" for e in logs))

    assert not await ready(client)
    assert (await post_signed(client, webhook_body(), settings)).status == 503


async def test_the_ingress_s_own_connection_refuses_a_broker_certificate_from_another_ca(
    tls_node: TlsNode,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await open_publisher(
            Endpoint.from_url(another_ca(tls_node)),
            connection_name="tls-tests",
            content_type="application/json",
            on_ready=lambda _: None,
        )


async def test_an_unsupported_option_is_refused_alike_by_settings_worker_and_ingress(
    tls_node: TlsNode, base_env: dict[str, str]
) -> None:
    url = tls_node.url(cafile=str(tls_node.pki.ca), frame_max="4096")
    refusals: list[str] = []
    for refuse in (
        lambda: Settings.from_env({**base_env, "AMQP_URL": url}),
        lambda: Endpoint.from_url(url),
    ):
        with pytest.raises(ConfigError) as refused:
            refuse()
        refusals.append(str(refused.value))
    with pytest.raises(ConfigError) as refused:
        await connect_robust(url, name="worker")
    refusals.append(str(refused.value))

    assert len(set(refusals)) == 1
    assert refusals[0].startswith("AMQP_URL option frame_max is not supported")
