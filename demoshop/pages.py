"""The demo shop's HTML: templates filled with escaped values, and the headers every page gets."""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

from aiohttp import web

from demoshop.catalogue import CATALOGUE

TEMPLATES = Path(__file__).with_name("templates")
STYLESHEET = (Path(__file__).with_name("static") / "shop.css").read_bytes()
# No form-action: the browser follows Buy's redirect to the checkout's origin, which some
# browsers check against form-action too.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


SHOP = _template("shop.html")
PRODUCT = _template("product.html")
ERROR = _template("error.html")


def render_shop() -> str:
    """The product page: every product of the catalogue with its price and a Buy form."""
    rows = "".join(
        PRODUCT.substitute(
            id=html.escape(product.id),
            name=html.escape(product.name),
            description=html.escape(product.description),
            price=html.escape(product.price_label),
        )
        for product in CATALOGUE
    )
    return SHOP.substitute(products=rows.rstrip("\n"))


def html_page(body: str, status: int = 200) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(status: int, title: str, detail: str) -> web.Response:
    """A readable page for a failure: a title, what happened, the way back. Never a traceback."""
    body = ERROR.substitute(title=html.escape(title), detail=html.escape(detail))
    return html_page(body, status)


def stylesheet() -> web.Response:
    response = web.Response(body=STYLESHEET, content_type="text/css")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
