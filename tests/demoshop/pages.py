"""What a browser does on the demo shop: open the page, press Buy."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    text: str
    headers: CIMultiDictProxy[str]


async def get(browser: aiohttp.ClientSession, url: str) -> Answer:
    async with browser.get(url, allow_redirects=False) as response:
        return Answer(response.status, await response.text(), response.headers)


async def buy(
    browser: aiohttp.ClientSession,
    shop: str,
    form: dict[str, str],
    *,
    origin: str | None = "",
    referer: str | None = None,
) -> Answer:
    """POST /buy as the shop's own page does; ``origin`` None sends no Origin header."""
    headers = {}
    if origin is not None:
        headers["Origin"] = origin or shop
    if referer is not None:
        headers["Referer"] = referer
    async with browser.post(
        f"{shop}/buy", data=form, headers=headers, allow_redirects=False
    ) as response:
        return Answer(response.status, await response.text(), response.headers)
