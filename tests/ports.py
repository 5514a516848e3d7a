"""Free TCP ports on 127.0.0.1 for the services a test starts."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_HANDED_OUT: set[int] = set()
_LOWEST = 10_000
_RESERVED = {15672, 15692, 25672}  # RabbitMQ management, metrics and clustering
_RNG = random.SystemRandom()  # not the global one, which test libraries reseed


def _ephemeral_floor() -> int:
    """Where the kernel starts picking ports for outgoing connections (and for bind to 0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on, never handed out twice in one test run.

    Bind-to-0 may give the same port to two callers before either service has bound it, and
    an outgoing connection may grab it meanwhile; so pick below the ephemeral range instead.
    """
    ceiling = _ephemeral_floor()
    if ceiling - _LOWEST < 1_000:
        ceiling = 65_535
    while True:
        port = _RNG.randrange(_LOWEST, ceiling)
        if port in _HANDED_OUT or port in _RESERVED:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
