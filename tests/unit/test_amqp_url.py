"""AMQP_URL: read as aiormq reads it, and every option not every process honours refused."""

from __future__ import annotations

import ssl
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path

import aiormq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ingress import __main__ as ingress_main
from ingress.publisher import Endpoint
from shared.amqp_url import UNSUPPORTED_OPTIONS, AmqpUrl, check_amqp_url
from shared.errors import ConfigError
from shared.messaging import connect, connect_robust
from tests.settings import Settings
from tests.tls_broker import Pki, make_pki
from worker import __main__ as worker_main

PASSWORD = "pw-s3cret"
BASE = f"amqps://recon:{PASSWORD}@broker.example:5671/payments"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def refusal(url: str) -> str:
    with pytest.raises(ConfigError) as refused:
        AmqpUrl.from_url(url)
    return str(refused.value)


@pytest.mark.parametrize(
    "option",
    [*UNSUPPORTED_OPTIONS, "frame_max", "channel_max", "connection_name", "client_properties"],
)
def test_an_option_not_every_process_honours_is_refused_naming_it(option: str) -> None:
    message = refusal(f"{BASE}?{option}=1")

    assert message.startswith(f"AMQP_URL option {option} is not supported")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "65535", "٣"])
def test_a_heartbeat_that_is_not_whole_seconds_in_range_is_refused_naming_it(value: str) -> None:
    assert refusal(f"{BASE}?heartbeat={value}").startswith("AMQP_URL option heartbeat must be")


def test_heartbeat_0_turns_heartbeats_off() -> None:
    assert AmqpUrl.from_url(f"{BASE}?heartbeat=0").heartbeat == 0


@pytest.mark.parametrize("value", ["true", "false", "yes", "2"])
def test_no_verify_ssl_is_refused_unless_0_or_1(value: str) -> None:
    # aiormq verifies only for "0": "false" would silently turn verification off
    assert "no_verify_ssl must be 0 or 1" in refusal(f"{BASE}?no_verify_ssl={value}")


@pytest.mark.parametrize("option", ["cafile", "capath", "cadata", "certfile", "no_verify_ssl"])
def test_a_tls_option_on_a_plain_amqp_url_is_refused(option: str) -> None:
    plain = BASE.replace("amqps://", "amqp://")
    assert f"option {option} needs an amqps:// URL" in refusal(f"{plain}?{option}=1")


def test_keyfile_without_certfile_is_refused() -> None:
    assert "keyfile needs certfile" in refusal(f"{BASE}?keyfile=client.key")


def test_external_auth_without_a_client_certificate_is_refused() -> None:
    assert "auth=external" in refusal(f"{BASE}?auth=external&cafile=ca.pem")


def test_an_auth_mechanism_other_than_plain_or_external_is_refused() -> None:
    assert "auth must be plain or external" in refusal(f"{BASE}?auth=amqplain")


def test_the_auth_mechanism_is_read_in_any_case() -> None:
    url = AmqpUrl.from_url(f"{BASE}?auth=External&certfile=client.pem")
    assert url.auth == "EXTERNAL"


def test_an_option_given_twice_is_refused() -> None:
    assert "gives option cafile twice" in refusal(f"{BASE}?cafile=a.pem&cafile=b.pem")


@pytest.mark.parametrize("option", ["heartbeat", "cafile", "no_verify_ssl"])
def test_an_empty_option_is_refused(option: str) -> None:
    assert f"option {option} is empty" in refusal(f"{BASE}?{option}=")


def test_cadata_that_is_not_base64_is_refused() -> None:
    assert "cadata must be base64" in refusal(f"{BASE}?cadata=not%20base64!")


@pytest.mark.parametrize(
    "query", ["frame_max=1", "heartbeat=x", "auth=amqplain", "no_verify_ssl=yes", "cafile="]
)
def test_no_refusal_quotes_the_password(query: str) -> None:
    assert PASSWORD not in refusal(f"{BASE}?{query}")


def test_repr_and_str_of_the_endpoint_hide_the_password() -> None:
    endpoint = Endpoint.from_url(BASE)

    assert PASSWORD not in repr(endpoint)
    assert PASSWORD not in str(endpoint)
    assert endpoint.password == PASSWORD


def test_the_login_is_the_url_credentials_for_plain_and_empty_for_external() -> None:
    plain = AmqpUrl.from_url(BASE)
    external = AmqpUrl.from_url(f"{BASE}?auth=external&certfile=client.pem")

    assert plain.sasl_response() == f"\0recon\0{PASSWORD}"
    assert external.sasl_response() == ""


def aiormq_reading(url: str) -> tuple[object, ...]:
    """What aiormq takes from ``url``: host, port, vhost, login, heartbeat, TLS, mechanism."""
    connection = aiormq.Connection(url)
    certs = connection.ssl_certs
    return (
        connection.url.host,
        connection.url.port,
        connection.vhost,
        connection.url.user or "guest",
        connection.url.password or "guest",
        connection.heartbeat_timeout,
        (certs.cafile, certs.capath, certs.cadata, certs.cert, certs.key, certs.verify),
        connection.url.query.get("auth", "plain").upper(),
    )


def our_reading(url: str) -> tuple[object, ...]:
    ours = AmqpUrl.from_url(url)
    return (
        ours.host,
        ours.port,
        ours.vhost,
        ours.username,
        ours.password,
        ours.heartbeat,
        (ours.cafile, ours.capath, ours.cadata, ours.certfile, ours.keyfile, ours.verify),
        ours.auth,
    )


CADATA = b64encode(b"\x30\x03\x02\x01\x01").decode()


@pytest.mark.parametrize(
    "url",
    [
        "amqp://127.0.0.1",
        "amqp://guest:guest@127.0.0.1:5672/",
        "amqp://u:p%40ss%2Fw@broker/%2F",
        "amqp://u:p@broker/a%20b?heartbeat=0",
        "amqps://u:p@broker/payments?heartbeat=15&cafile=ca.pem",
        "amqps://broker?auth=external&cafile=ca.pem&certfile=c.pem&keyfile=c.key",
        "amqps://u:p@[::1]:5999/?capath=certs&no_verify_ssl=1",
        f"amqps://u:p@broker/?cadata={CADATA.replace('+', '%2B')}&no_verify_ssl=0",
    ],
)
async def test_a_url_is_read_exactly_as_aiormq_reads_it(url: str) -> None:
    assert our_reading(url) == aiormq_reading(url)


def test_the_tls_context_verifies_the_broker_unless_no_verify_ssl_is_1(pki: Pki) -> None:
    verifying = AmqpUrl.from_url(f"{BASE}?cafile={pki.ca}").ssl_context()
    trusting = AmqpUrl.from_url(f"{BASE}?cafile={pki.ca}&no_verify_ssl=1").ssl_context()

    assert (verifying.verify_mode, verifying.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert (trusting.verify_mode, trusting.check_hostname) == (ssl.CERT_NONE, False)


def test_the_tls_context_trusts_the_ca_given_as_cadata(pki: Pki) -> None:
    der = x509.load_pem_x509_certificate(pki.ca.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    cadata = b64encode(der).decode().replace("+", "%2B").replace("/", "%2F")

    context = AmqpUrl.from_url(f"{BASE}?cadata={cadata}").ssl_context()

    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "recon tests TLS CA"),),)
    ]


def test_settings_accept_an_amqps_url_whose_files_load(pki: Pki) -> None:
    url = f"{BASE}?cafile={pki.ca}&certfile={pki.client_cert}&keyfile={pki.client_key}"
    assert Settings.from_env({"AMQP_URL": url}).amqp_url.reveal() == url


def test_settings_refuse_an_option_no_process_honours() -> None:
    with pytest.raises(ConfigError, match="AMQP_URL option frame_max is not supported"):
        Settings.from_env({"AMQP_URL": f"{BASE}?frame_max=4096"})


def test_settings_refuse_a_ca_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AMQP_URL option cafile: no file"):
        check_amqp_url(f"{BASE}?cafile={tmp_path / 'missing.pem'}")


def test_settings_refuse_a_key_that_is_not_the_certificate_s(pki: Pki) -> None:
    url = f"{BASE}?certfile={pki.client_cert}&keyfile={pki.server_key}"
    with pytest.raises(ConfigError, match="AMQP_URL options certfile, keyfile do not load"):
        check_amqp_url(url)


@pytest.mark.parametrize("opener", [connect, connect_robust], ids=["connect", "robust"])
async def test_the_aio_pika_path_refuses_the_option_before_connecting(opener: object) -> None:
    with pytest.raises(ConfigError, match="AMQP_URL option frame_max is not supported"):
        await opener("amqp://guest:guest@127.0.0.1:1/?frame_max=4096")  # type: ignore[operator]


ENTRYPOINTS: dict[str, Callable[[], None]] = {
    "webhooks": lambda: ingress_main.main(["webhooks"]),
    "checkout": lambda: ingress_main.main(["checkout"]),
    "worker": lambda: worker_main.main([]),
}


@pytest.mark.parametrize("process", ENTRYPOINTS)
def test_every_process_stops_at_start_up_naming_an_unsupported_option(
    monkeypatch: pytest.MonkeyPatch, process: str
) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/?frame_max=4096")

    with pytest.raises(SystemExit) as exited:
        ENTRYPOINTS[process]()

    assert str(exited.value.code).startswith(
        "configuration error: AMQP_URL option frame_max is not supported"
    )
