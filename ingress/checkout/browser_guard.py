"""Refuse what a foreign web page can make a shopper's browser POST to the checkout.

A page on another site can send a form (``application/x-www-form-urlencoded``,
``multipart/form-data``, ``text/plain``) or a ``fetch`` with a body of no declared type without
a CORS preflight, and the browser attaches the shopper's cookies. So the shopper endpoints take
only ``application/json`` bodies (which need a preflight, which the checkout never grants), and
refuse any request whose ``Origin`` names a site other than the checkout's own.

Two things stay allowed: an empty body with no ``Content-Type`` (the seed's storefront calls
``POST /payments/init`` so), and a request without ``Origin`` (servers, native apps, curl; a
browser always sends ``Origin`` on a POST).
"""

from __future__ import annotations

import contextlib
import ipaddress
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from ingress.checkout.service import CheckoutError
from shared.errors import ConfigError

JSON = "application/json"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsupportedMediaType(
    CheckoutError, status=415, code="unsupported_media_type", title="JSON body required"
):
    """The body is not declared ``application/json``."""


class ForeignOrigin(
    CheckoutError, status=403, code="foreign_origin", title="Request from another site"
):
    """The request comes from a page of another origin than the checkout's."""


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased, without a default port,
    an IPv6 address in its compressed form.

    Path, query, fragment and user info are dropped; an IPv6 host keeps its brackets. None for
    anything that has no such origin: another scheme, no host, a bad port, ``null``.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-cased, IPv6 brackets removed
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 literal, spelt as browsers spell it
        with contextlib.suppress(ValueError):
            host = ipaddress.IPv6Address(host).compressed
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def checkout_origin(public_base_url: str) -> str:
    """The origin of PUBLIC_BASE_URL, for :func:`check_browser_post`; ConfigError if none."""
    origin = origin_of(public_base_url)
    if origin is None:
        raise ConfigError(f"PUBLIC_BASE_URL has no http(s) origin: {public_base_url!r}")
    return origin


def check_browser_post(request: web.Request, public_origin: str) -> None:
    """Raise :class:`UnsupportedMediaType` for a body not declared JSON (an empty body with no
    ``Content-Type`` is fine), else :class:`ForeignOrigin` for an ``Origin`` of another site.

    ``public_origin`` is :func:`checkout_origin` of ``settings.public_base_url``. Reads headers
    only, never the body. Checks any method it is given; call it for the shopper POSTs.
    """
    declared = hdrs.CONTENT_TYPE in request.headers
    # content_type: the media type alone, lower-cased; application/octet-stream when undeclared
    if (declared or request.body_exists) and request.content_type != JSON:
        raise UnsupportedMediaType(f"the body must be sent as {JSON}")
    for origin in request.headers.getall(hdrs.ORIGIN, ()):
        if origin_of(origin) != public_origin:
            raise ForeignOrigin("requests from other sites are not accepted")
