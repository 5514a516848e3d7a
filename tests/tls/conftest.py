"""Fixtures for the TLS tests: a RabbitMQ node of their own, started once per session.

The node starts only when a test here asks for it (a few seconds); without an installed
``rabbitmq-server`` these tests are skipped, saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.ingress.conftest import start_ingress  # noqa: F401 (a fixture these tests use too)
from tests.settings import Settings
from tests.tls_broker import TlsNode, rabbitmq_script, running_tls_node

SettingsFor = Callable[[str], Settings]


@pytest.fixture(scope="session")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    """A TLS-only RabbitMQ node on 127.0.0.1, stopped and removed at the end of the session."""
    if rabbitmq_script("rabbitmq-server") is None or rabbitmq_script("rabbitmqctl") is None:
        pytest.skip("rabbitmq-server is not installed: these tests start a TLS node of their own")
    with running_tls_node(tmp_path_factory.mktemp("tls-rabbitmq")) as node:
        yield node


@pytest.fixture
def settings_for(base_env: dict[str, str], settings: Settings) -> SettingsFor:
    """Settings read from the environment with AMQP_URL set to a URL, names of this test's own."""

    def read(url: str) -> Settings:
        return Settings.from_env(
            {
                **base_env,
                "AMQP_URL": url,
                "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
                "AMQP_RECONNECT_INTERVAL_SECONDS": "0.2",
            }
        )

    return read
