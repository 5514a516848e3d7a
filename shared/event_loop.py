"""The event loop every process runs on."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed, else the default loop.

    The services are event-loop bound (parsing, publishing, HTTP round trips); uvloop roughly
    halves that overhead.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
