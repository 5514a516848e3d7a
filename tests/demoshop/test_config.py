"""DemoShopConfig: the defaults run against ``make run``'s checkout; bad values are named."""

from __future__ import annotations

import pytest

from demoshop.config import DemoShopConfig
from shared.config import SANDBOX_MERCHANT_API_KEY
from shared.errors import ConfigError


def test_the_defaults_sell_through_the_local_checkout_with_the_sandbox_key() -> None:
    config = DemoShopConfig.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 8001)
    assert config.checkout_url == "http://127.0.0.1:8000"
    assert config.api_key.reveal() == SANDBOX_MERCHANT_API_KEY


def test_the_checkout_url_loses_its_trailing_slash() -> None:
    config = DemoShopConfig.from_env({"DEMO_SHOP_CHECKOUT_URL": "http://127.0.0.1:18000/"})
    assert config.checkout_url == "http://127.0.0.1:18000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEMO_SHOP_CHECKOUT_URL", "ftp://127.0.0.1"),
        ("DEMO_SHOP_CHECKOUT_URL", "http://127.0.0.1:port"),
        ("DEMO_SHOP_PORT", "eighty"),
        ("DEMO_SHOP_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        DemoShopConfig.from_env({name: value})


def test_the_api_key_never_shows_in_the_config_repr() -> None:
    config = DemoShopConfig.from_env({"DEMO_SHOP_API_KEY": "very-secret-key"})
    assert "very-secret-key" not in repr(config)
