"""PRE_AUTHORIZE_HOOK: the worker loads the named class once; a bad path is a ConfigError."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.errors import ConfigError
from shared.messaging import Names, open_channel
from shared.payrails.client import open_payrails_client
from tests.checkout.conftest import FRICTIONLESS, order_body, transitions_of
from tests.checkout.hooks import DENIAL_REASON, DenyEverything
from tests.settings import Settings
from worker.__main__ import build_consumer, main
from worker.deps import Deps
from worker.preauthorize import AllowAll, load_hook

Client = TestClient[web.Request, web.Application]
DENY_EVERYTHING = "tests.checkout.hooks:DenyEverything"


def test_the_setting_is_read_from_the_environment(base_env: dict[str, str]) -> None:
    settings = Settings.from_env({**base_env, "PRE_AUTHORIZE_HOOK": DENY_EVERYTHING})
    assert settings.pre_authorize_hook == DENY_EVERYTHING
    assert Settings.from_env(base_env).pre_authorize_hook == ""


def test_an_empty_setting_allows_every_order() -> None:
    assert isinstance(load_hook(""), AllowAll)


def test_a_dotted_path_loads_an_instance_of_the_class() -> None:
    assert isinstance(load_hook(DENY_EVERYTHING), DenyEverything)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("tests.checkout.hooks.DenyEverything", "package.module:ClassName", id="form"),
        pytest.param("tests.checkout.no_such_module:Hook", "cannot import", id="module"),
        pytest.param("tests.checkout.hooks:Missing", "has no class", id="class"),
        pytest.param("tests.checkout.hooks:DENIAL_REASON", "has no class", id="not-a-class"),
        pytest.param("tests.checkout.hooks:NeedsArguments", "without arguments", id="arguments"),
        pytest.param("tests.checkout.hooks:NoCheck", "check(order)", id="no-check"),
    ],
)
def test_a_bad_path_is_a_config_error_naming_the_setting(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match="PRE_AUTHORIZE_HOOK") as raised:
        load_hook(path)
    assert message in str(raised.value)


def test_the_worker_refuses_to_start_with_a_bad_hook_path(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**base_env, "PRE_AUTHORIZE_HOOK": "no_such_package:Hook"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main([])
    assert str(exited.value).startswith("configuration error: PRE_AUTHORIZE_HOOK")


async def test_a_configured_denying_hook_fails_the_order_without_calling_payrails(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    amqp_connection: AbstractRobustConnection,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The worker's own authorize consumer, built as ``python -m worker`` builds it."""
    settings = checkout_settings.model_copy(update={"pre_authorize_hook": DENY_EVERYTHING})
    publish_channel = await open_channel(amqp_connection)
    consume_channel = await amqp_connection.channel()
    async with open_payrails_client(settings) as payrails:
        deps = Deps(settings, topology, sessions, payrails, publish_channel)
        consumer = build_consumer(
            "authorize", deps, consume_channel, load_hook(settings.pre_authorize_hook)
        )
        await consumer.start()
        try:
            body = await order_body(checkout, sandbox, FRICTIONLESS)
            response = await checkout.post("/checkout/place-order", json=body)
            answer = await response.json()
        finally:
            await consumer.stop()
    await consume_channel.close()
    await publish_channel.close()
    assert response.status == 200, answer
    assert answer["status"] == "failed"
    assert answer["reason"] == DENIAL_REASON
    assert (await sandbox.stats())["authorizesExecuted"] == {}
    assert await transitions_of(sessions, body["orderReference"]) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "payment_failed", "pre_authorize"),
    ]
