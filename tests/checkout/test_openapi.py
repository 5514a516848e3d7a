"""docs/openapi.yaml and the checkout app's routes describe the same API."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ingress.checkout_app import create_checkout_app
from shared.config import Settings

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
