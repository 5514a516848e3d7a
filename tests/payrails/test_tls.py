"""TLS to Payrails: the CA bundle and client certificate load, and a real mTLS handshake works."""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from sandbox.config import SandboxConfig
from shared.errors import ConfigError
from shared.payrails.client import open_payrails_client
from shared.payrails.errors import PayrailsTransientError
from shared.payrails.tls import build_ssl_context
from tests.payrails.flows import new_execution
from tests.settings import Settings

# A test-only CA with a server certificate for 127.0.0.1 and a client certificate (make-certs.sh).
FIXTURES = Path(__file__).with_name("fixtures")
CLIENT_NAME = "payrails-recon test client"


def with_files(
    settings: Settings, cert: Path | None, key: Path | None, ca: Path | None = None
) -> Settings:
    return settings.model_copy(
        update={
            "payrails_client_cert": str(cert) if cert else None,
            "payrails_client_key": str(key) if key else None,
            "payrails_ca_file": str(ca) if ca else None,
        }
    )


@dataclasses.dataclass
class MtlsServer:
    url: str
    peer_certificates: list[dict[str, Any]]


def server_context() -> ssl.SSLContext:
    """Serve the test server certificate and require a client certificate from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=FIXTURES / "ca.crt")
    context.load_cert_chain(FIXTURES / "server.crt", FIXTURES / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@contextlib.asynccontextmanager
async def mtls_sandbox(settings: Settings) -> AsyncIterator[MtlsServer]:
    """The sandbox behind TLS that demands a client certificate; records the ones it saw."""
    config = SandboxConfig(
        client_id=settings.payrails_client_id,
        client_secret=settings.payrails_client_secret,
        workspace_id=settings.payrails_workspace_id,
        webhook_url="",
    )
    app = create_sandbox_app(config)
    seen: list[dict[str, Any]] = []

    async def record_peer(request: web.Request, response: web.StreamResponse) -> None:
        transport = request.transport
        if transport is not None:
            seen.append(transport.get_extra_info("peercert") or {})

    app.on_response_prepare.append(record_peer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context())
        await site.start()
        port = runner.addresses[0][1]
        yield MtlsServer(f"https://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def common_name(certificate: dict[str, Any]) -> str | None:
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def test_no_client_certificate_means_no_custom_context(settings: Settings) -> None:
    assert build_ssl_context(with_files(settings, None, None)) is None


def test_client_certificate_and_key_load_into_a_verifying_context(settings: Settings) -> None:
    context = build_ssl_context(
        with_files(settings, FIXTURES / "client.crt", FIXTURES / "client.key")
    )
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_key_without_a_certificate_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="PAYRAILS_CLIENT_CERT"):
        build_ssl_context(with_files(settings, None, FIXTURES / "client.key"))


def test_unreadable_certificate_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_ssl_context(with_files(settings, tmp_path / "missing.crt", None))


def test_ca_file_alone_gives_a_context_that_trusts_it(settings: Settings) -> None:
    context = build_ssl_context(with_files(settings, None, None, FIXTURES / "ca.crt"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    subjects = [dict(rdn[0] for rdn in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "payrails-recon test CA"} in subjects


def test_unreadable_ca_file_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PAYRAILS_CA_FILE"):
        build_ssl_context(with_files(settings, None, None, tmp_path / "missing.pem"))


async def test_server_requiring_mtls_sees_the_client_certificate(settings: Settings) -> None:
    async with mtls_sandbox(settings) as server:
        configured = with_files(
            settings, FIXTURES / "client.crt", FIXTURES / "client.key", FIXTURES / "ca.crt"
        ).model_copy(update={"payrails_base_url": server.url})
        async with open_payrails_client(configured) as client:
            execution = await new_execution(client)

    assert execution.id
    assert server.peer_certificates
    assert {common_name(cert) for cert in server.peer_certificates} == {CLIENT_NAME}


async def test_server_requiring_mtls_refuses_a_client_without_a_certificate(
    settings: Settings,
) -> None:
    async with mtls_sandbox(settings) as server:
        configured = with_files(settings, None, None, FIXTURES / "ca.crt").model_copy(
            update={"payrails_base_url": server.url, "payrails_max_retries": 0}
        )
        async with open_payrails_client(configured) as client:
            with pytest.raises(PayrailsTransientError):
                await new_execution(client)
    assert server.peer_certificates == []
