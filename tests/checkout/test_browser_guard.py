"""The shopper POSTs refuse what a foreign page can make a browser send: non-JSON bodies, foreign
origins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from aiohttp.typedefs import Handler
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from ingress.checkout.browser_guard import (
    ForeignOrigin,
    UnsupportedMediaType,
    check_browser_post,
    checkout_origin,
    origin_of,
)
from ingress.checkout.service import CheckoutError
from shared.errors import ConfigError

SHOP = "https://shop.example"
Client = TestClient[web.Request, web.Application]

_LABEL = r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
hosts = st.one_of(
    st.from_regex(rf"{_LABEL}(\.{_LABEL}){{0,3}}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
)
schemes = st.sampled_from(["http", "https"])
ports = st.integers(min_value=1, max_value=65_535)
paths = st.from_regex(
    r"(/[A-Za-z0-9._~-]{0,8}){0,3}(\?[a-z=&]{0,8})?(#[a-z]{0,5})?", fullmatch=True
)


def random_case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flips[i : i + 1] == [True] else c for i, c in enumerate(text))


def post(headers: dict[str, str] | list[tuple[str, str]]) -> web.Request:
    return make_mocked_request("POST", "/payments/init", headers=CIMultiDict(headers))


# --- origin_of ---------------------------------------------------------------------------------


@given(schemes, hosts, st.one_of(st.none(), ports), paths)
def test_the_origin_of_an_origin_is_itself(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    origin = origin_of(url)
    assert origin is not None
    assert origin_of(origin) == origin


@given(schemes, hosts, st.lists(st.booleans()))
def test_scheme_and_host_compare_case_insensitively(
    scheme: str, host: str, flips: list[bool]
) -> None:
    url = f"{scheme}://{host}"
    assert origin_of(random_case(url, flips)) == origin_of(url)


@given(hosts)
def test_an_explicit_default_port_is_the_same_origin(host: str) -> None:
    assert origin_of(f"http://{host}:80") == origin_of(f"http://{host}") == f"http://{host}"
    assert origin_of(f"https://{host}:443") == origin_of(f"https://{host}") == f"https://{host}"


@given(hosts, ports.filter(lambda port: port not in (80, 443)))
def test_another_port_is_kept(host: str, port: int) -> None:
    assert origin_of(f"https://{host}:{port}") == f"https://{host}:{port}"


@given(schemes, hosts, paths)
def test_path_query_and_fragment_are_not_part_of_the_origin(
    scheme: str, host: str, path: str
) -> None:
    assert origin_of(f"{scheme}://{host}{path}") == origin_of(f"{scheme}://{host}")


def test_an_ipv6_host_compares_by_address_not_spelling() -> None:
    assert origin_of("http://[0:0:0:0:0:0:0:1]:8000") == origin_of("http://[::1]:8000")


@given(st.text())
def test_any_text_gives_an_http_origin_or_none(text: str) -> None:
    origin = origin_of(text)
    assert origin is None or origin.startswith(("http://", "https://"))


@pytest.mark.parametrize(
    "url", ["null", "", "ftp://shop.example", "https://", "https://shop.example:99999", "shop"]
)
def test_urls_without_an_http_origin_have_none(url: str) -> None:
    assert origin_of(url) is None


def test_checkout_origin_is_the_normalised_origin_of_the_public_base_url() -> None:
    assert checkout_origin("HTTPS://Shop.Example:443/base") == SHOP


def test_a_public_base_url_without_an_origin_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        checkout_origin("ftp://shop.example")


# --- check_browser_post on headers ---------------------------------------------------------------


def test_the_refusals_are_checkout_errors_with_status_and_code() -> None:
    assert issubclass(UnsupportedMediaType, CheckoutError)
    assert issubclass(ForeignOrigin, CheckoutError)
    assert (UnsupportedMediaType.status, UnsupportedMediaType.code) == (
        415,
        "unsupported_media_type",
    )
    assert (ForeignOrigin.status, ForeignOrigin.code) == (403, "foreign_origin")


def test_a_request_without_body_content_type_or_origin_is_allowed() -> None:
    check_browser_post(post({}), SHOP)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_json_content_type_is_allowed(content_type: str) -> None:
    check_browser_post(post({"Content-Type": content_type}), SHOP)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonp",
        "text/json",
    ],
)
def test_any_other_content_type_is_refused_even_without_a_body(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_browser_post(post({"Content-Type": content_type}), SHOP)


@pytest.mark.parametrize(
    "origin", [SHOP, "HTTPS://SHOP.EXAMPLE", "https://shop.example:443", "https://Shop.example"]
)
def test_the_checkout_s_own_origin_is_allowed_in_any_spelling(origin: str) -> None:
    check_browser_post(post({"Origin": origin}), SHOP)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://shop.example",
        "https://shop.example:8443",
        "https://sub.shop.example",
        "https://shop.example.evil.example",
        "null",
        "",
    ],
)
def test_a_foreign_origin_is_refused(origin: str) -> None:
    with pytest.raises(ForeignOrigin):
        check_browser_post(post({"Origin": origin}), SHOP)


def test_a_foreign_origin_among_several_is_refused() -> None:
    with pytest.raises(ForeignOrigin):
        check_browser_post(post([("Origin", SHOP), ("Origin", "https://evil.example")]), SHOP)


def test_a_non_default_public_port_must_match() -> None:
    public = checkout_origin("http://127.0.0.1:8000")
    check_browser_post(post({"Origin": "http://127.0.0.1:8000"}), public)
    with pytest.raises(ForeignOrigin):
        check_browser_post(post({"Origin": "http://127.0.0.1"}), public)


# --- on a real socket ----------------------------------------------------------------------------


@web.middleware
async def answer_checkout_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CheckoutError as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)


async def guarded(request: web.Request) -> web.Response:
    check_browser_post(request, SHOP)
    return web.json_response({"body": (await request.read()).decode()})


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[answer_checkout_errors])
    app.router.add_post("/payments/init", guarded)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_an_empty_post_without_content_type_is_served(client: Client) -> None:
    response = await client.post("/payments/init", skip_auto_headers={"Content-Type"})
    assert response.status == 200
    assert await response.json() == {"body": ""}


async def test_a_json_post_from_the_checkout_s_origin_is_served(client: Client) -> None:
    response = await client.post("/payments/init", json={"a": 1}, headers={"Origin": SHOP})
    assert response.status == 200


async def test_a_form_post_is_refused_with_415(client: Client) -> None:
    response = await client.post("/payments/init", data={"paymentInstrumentId": "pi_1"})
    assert response.status == 415
    assert (await response.json())["error"] == "unsupported_media_type"


async def test_a_multipart_post_is_refused_with_415(client: Client) -> None:
    form = FormData()
    form.add_field("paymentInstrumentId", b"pi_1", filename="instrument.txt")
    response = await client.post("/payments/init", data=form)
    assert response.status == 415


async def test_a_text_plain_post_is_refused_with_415(client: Client) -> None:
    response = await client.post(
        "/payments/init", data='{"a": 1}', headers={"Content-Type": "text/plain"}
    )
    assert response.status == 415


async def test_a_body_without_content_type_is_refused_with_415(client: Client) -> None:
    response = await client.post(
        "/payments/init", data=b'{"a": 1}', skip_auto_headers={"Content-Type"}
    )
    assert response.status == 415


async def test_a_json_post_from_a_foreign_origin_is_refused_with_403(client: Client) -> None:
    response = await client.post(
        "/payments/init", json={"a": 1}, headers={"Origin": "https://evil.example"}
    )
    assert response.status == 403
    assert (await response.json())["error"] == "foreign_origin"
