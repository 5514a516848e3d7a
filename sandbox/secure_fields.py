"""Secure Fields stand-in: the JS SDK and the card iframes, served from the sandbox's own origin.

The storefront loads ``/public/sdk/payrails-sdk.js`` from here; the SDK mounts iframes from
``/public/secure-fields/field``, and those iframes post card data to the sandbox's tokenize
endpoint. The checkout app's origin never sees a card number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")

SDK_PATH = "/public/sdk/payrails-sdk.js"
FIELD_PATH = "/public/secure-fields/field"

_JS = "application/javascript"
# Path -> (file under static/, content type).
ASSETS: Mapping[str, tuple[str, str]] = {
    SDK_PATH: ("payrails-sdk.js", _JS),
    FIELD_PATH: ("secure-field.html", "text/html"),
    "/public/secure-fields/secure-field.js": ("secure-field.js", _JS),
    "/public/secure-fields/secure-field.css": ("secure-field.css", "text/css"),
}

# The field page may be framed by any storefront, and loads nothing but its own origin's files.
FIELD_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "frame-ancestors *; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
# Cross-origin pages load the SDK with a plain <script> tag; CORS lets them use SRI if they want.
SDK_HEADERS: Mapping[str, str] = {"Access-Control-Allow-Origin": "*"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _asset_handler(body: bytes, content_type: str, headers: Mapping[str, str]) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
        response.headers.update(headers)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return serve


def _headers_for(path: str) -> Mapping[str, str]:
    if path == FIELD_PATH:
        return FIELD_HEADERS
    if path == SDK_PATH:
        return SDK_HEADERS
    return {}


def setup_secure_fields_routes(app: web.Application) -> None:
    """Serve the SDK and the field iframe assets (read once, when the app is built)."""
    for path, (filename, content_type) in ASSETS.items():
        body = (STATIC_DIR / filename).read_bytes()
        app.router.add_get(path, _asset_handler(body, content_type, _headers_for(path)))
