"""docs/openapi.yaml and the checkout app's routes describe the same API."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from ingress.checkout.shopper import COOKIE, HEADER
from ingress.checkout.validation import INSTRUMENT_ID, METHOD_CODE, REFERENCE
from ingress.checkout_app import create_checkout_app
from shared.money import MAX_INTEGER_DIGITS
from tests.settings import Settings

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def spec_operations() -> set[tuple[str, str]]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def route_operations(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method.lower() in HTTP_METHODS
    }


def storefront_operations() -> set[tuple[str, str]]:
    """The demo storefront's pages are not part of the API description."""
    try:
        storefront = importlib.import_module("ingress.storefront")
    except ModuleNotFoundError:
        return set()
    app = web.Application()
    storefront.setup_storefront_routes(app)
    return route_operations(app)


def test_every_route_of_the_app_is_described() -> None:
    routes = route_operations(create_checkout_app(Settings())) - storefront_operations()
    assert routes - spec_operations() == set()


def test_every_described_operation_is_served() -> None:
    routes = route_operations(create_checkout_app(Settings()))
    assert spec_operations() - routes == set()


def test_every_operation_has_an_id_and_responses() -> None:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("operationId"), (method, path)
            assert operation.get("responses"), (method, path)


def schema(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    found: dict[str, Any] = spec["components"]["schemas"][name]
    return found


@pytest.mark.parametrize(
    ("schema_name", "field", "pattern"),
    [
        ("PlaceOrderRequest", "paymentInstrumentId", INSTRUMENT_ID),
        ("PlaceOrderRequest", "paymentMethodCode", METHOD_CODE),
        ("Reference", None, REFERENCE),
    ],
)
def test_the_described_text_patterns_are_the_validators(
    schema_name: str, field: str | None, pattern: re.Pattern[str]
) -> None:
    described = schema(schema_name)
    if field is not None:
        described = described["properties"][field]
    # JSON Schema patterns have no \Z; "$" there does not admit a trailing newline.
    assert described["pattern"] == pattern.pattern.removesuffix("\\Z") + "$"


def test_the_described_amount_pattern_bounds_the_integer_digits_like_money() -> None:
    pattern = re.compile(schema("Amount")["properties"]["value"]["pattern"])
    assert pattern.match("9" * MAX_INTEGER_DIGITS + ".9999")
    assert not pattern.match("1" + "0" * MAX_INTEGER_DIGITS + ".00")


def test_the_merchant_api_is_described_behind_the_bearer_key_and_nothing_else_is() -> None:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["merchantApiKey"]["type"], schemes["merchantApiKey"]["scheme"]) == (
        "http",
        "bearer",
    )
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            named = {name for requirement in operation.get("security", []) for name in requirement}
            assert named <= set(schemes), (method, path)
            if path.startswith("/merchant/"):
                assert operation.get("security") == [{"merchantApiKey": []}], (method, path)
                assert "401" in operation["responses"], (method, path)
            else:
                assert "merchantApiKey" not in named, (method, path)


def test_the_described_session_cookie_and_header_are_the_ones_read() -> None:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["checkoutSession"]["in"], schemes["checkoutSession"]["name"]) == (
        "cookie",
        COOKIE,
    )
    assert (schemes["checkoutSessionHeader"]["in"], schemes["checkoutSessionHeader"]["name"]) == (
        "header",
        HEADER,
    )
