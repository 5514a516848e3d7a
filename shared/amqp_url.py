"""AMQP_URL, read one way by every process.

The worker, the checkout and the webhook ingress's topology connection reach RabbitMQ through
aio-pika, which hands the URL to aiormq; the webhook ingress publishes through a connection of
its own (``ingress.publisher``). aiormq reads a few query options and silently ignores any other,
so an option one path honoured and the other ignored would let the same URL mean two things:
the worker connecting while the ingress never becomes ready. This module is the one reading of
the URL. It gives what both paths use, read as aiormq reads it (the same parser, yarl, and the
same defaults), and refuses at start-up, with a ConfigError naming it, any option that not
every path honours.

Honoured options:

- ``heartbeat``: seconds between heartbeats, 0 turns them off (default 60);
- ``auth``: ``plain`` (the URL's login and password, the default) or ``external`` (SASL
  EXTERNAL: the broker takes the login from the client certificate);
- on ``amqps://`` only: ``cafile``, ``capath`` and ``cadata`` (base64 of DER certificates),
  which verify the broker instead of the system's trust store; ``certfile`` and ``keyfile``,
  the client certificate (the key may sit in ``certfile``); ``no_verify_ssl=1``, which turns
  verification off altogether.
"""

from __future__ import annotations

import binascii
import os
import ssl
from base64 import b64decode
from dataclasses import dataclass, field
from typing import Final, Literal

from yarl import URL

from shared.errors import ConfigError

DEFAULT_HEARTBEAT_SECONDS = 60
# aiormq reads 65535 and above as 0 (no heartbeats); refused rather than read differently.
MAX_HEARTBEAT_SECONDS = 65_534
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
PLAIN: Final = "PLAIN"
EXTERNAL: Final = "EXTERNAL"
Mechanism = Literal["PLAIN", "EXTERNAL"]

TLS_OPTIONS = ("cafile", "capath", "cadata", "certfile", "keyfile", "no_verify_ssl")
SUPPORTED_OPTIONS = ("auth", "heartbeat", *TLS_OPTIONS)
# Options aio-pika or aiormq read that not every process can honour the same way.
UNSUPPORTED_OPTIONS: dict[str, str] = {
    "name": "each process names its own connections",
    "reconnect_interval": "set AMQP_RECONNECT_INTERVAL_SECONDS instead",
    "fail_fast": "each process decides itself how it waits for the broker at start-up",
    "timeout": "aiormq reads it but never uses it",
    "interleave": "the webhook ingress's publishing connection does not support it",
    "happy_eyeballs_delay": "the webhook ingress's publishing connection does not support it",
}


@dataclass(frozen=True, slots=True)
class AmqpUrl:
    """Where and as whom to connect, and how: an ``amqp://`` or ``amqps://`` URL, checked."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    vhost: str = "/"
    tls: bool = False
    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS
    auth: Mechanism = PLAIN
    cafile: str | None = None
    capath: str | None = None
    cadata: bytes | None = field(default=None, repr=False)
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True

    @classmethod
    def from_url(cls, url: str) -> AmqpUrl:
        """Parse and check ``url``; ConfigError naming AMQP_URL and what is wrong.

        No message quotes the URL: it may carry a password.
        """
        try:
            parsed = URL(url)
            port = parsed.port
        except ValueError as exc:
            raise ConfigError(f"AMQP_URL is not a valid URL: {exc}") from exc
        scheme = parsed.scheme
        if scheme not in DEFAULT_PORTS:
            raise ConfigError("AMQP_URL must start with amqp:// or amqps://")
        if not parsed.host:
            raise ConfigError("AMQP_URL names no host")
        options = _options(parsed)
        tls = scheme == "amqps"
        if not tls and (given := [name for name in TLS_OPTIONS if name in options]):
            raise ConfigError(
                f"AMQP_URL option {given[0]} needs an amqps:// URL (amqp:// never uses TLS)"
            )
        certfile, keyfile = options.get("certfile"), options.get("keyfile")
        if keyfile is not None and certfile is None:
            raise ConfigError("AMQP_URL option keyfile needs certfile: the certificate it signs")
        auth = _mechanism(options.get("auth", "plain"))
        if auth == EXTERNAL and certfile is None:
            raise ConfigError(
                "AMQP_URL option auth=external logs in with the client certificate: "
                "it needs amqps:// and certfile"
            )
        return cls(
            host=parsed.host,
            port=port or DEFAULT_PORTS[scheme],
            username=parsed.user or "guest",
            password=parsed.password or "guest",
            vhost=_vhost(parsed.path),
            tls=tls,
            heartbeat=_heartbeat(options.get("heartbeat")),
            auth=auth,
            cafile=options.get("cafile"),
            capath=options.get("capath"),
            cadata=_cadata(options.get("cadata")),
            certfile=certfile,
            keyfile=keyfile,
            verify=_verify(options.get("no_verify_ssl", "0")),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context aiormq builds from the same options; reads files, so not on a loop."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=self.cafile, capath=self.capath, cadata=self.cadata
        )
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def sasl_response(self) -> str:
        """Connection.StartOk's response for ``auth``: PLAIN's login, EXTERNAL's empty one."""
        if self.auth == EXTERNAL:
            return ""  # the broker reads the login from the client certificate
        return f"\0{self.username}\0{self.password}"


def check_amqp_url(url: str) -> str:
    """``url`` unchanged once it parses and, for ``amqps://``, its TLS files load.

    For start-up: a missing or unreadable certificate is a ConfigError now, in every process,
    rather than a failed connect later.
    """
    parsed = AmqpUrl.from_url(url)
    if parsed.tls:
        _check_tls_files(parsed)
    return url


def _check_tls_files(url: AmqpUrl) -> None:
    for option, path in (("cafile", url.cafile), ("certfile", url.certfile)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"AMQP_URL option {option}: no file {path}")
    if url.keyfile is not None and not os.path.isfile(url.keyfile):
        raise ConfigError(f"AMQP_URL option keyfile: no file {url.keyfile}")
    if url.capath is not None and not os.path.isdir(url.capath):
        raise ConfigError(f"AMQP_URL option capath: no directory {url.capath}")
    try:
        url.ssl_context()
    except (OSError, ssl.SSLError) as exc:  # SSLError: not a certificate, or a key that differs
        given = ", ".join(name for name in TLS_OPTIONS if getattr(url, name, None) is not None)
        raise ConfigError(f"AMQP_URL options {given} do not load: {exc}") from exc


def _options(url: URL) -> dict[str, str]:
    """The query options, each given once, non-empty, and one every process honours."""
    options: dict[str, str] = {}
    for name, value in url.query.items():
        if name in options:
            raise ConfigError(f"AMQP_URL gives option {name} twice")
        if name in UNSUPPORTED_OPTIONS:
            raise ConfigError(
                f"AMQP_URL option {name} is not supported: {UNSUPPORTED_OPTIONS[name]}"
            )
        if name not in SUPPORTED_OPTIONS:
            raise ConfigError(
                f"AMQP_URL option {name} is not supported: no process reads it "
                f"(supported: {', '.join(SUPPORTED_OPTIONS)})"
            )
        if not value:
            raise ConfigError(f"AMQP_URL option {name} is empty")
        options[name] = value
    return options


def _vhost(path: str) -> str:
    """As aiormq reads it: the path after its first slash, an escaped slash kept as one."""
    if path in ("", "/"):
        return "/"
    return path[1:].replace("%2F", "/")


def _heartbeat(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_HEARTBEAT_SECONDS
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_HEARTBEAT_SECONDS:
        raise ConfigError(
            f"AMQP_URL option heartbeat must be whole seconds from 0 (off) to "
            f"{MAX_HEARTBEAT_SECONDS}, got {raw!r}"
        )
    return int(raw)


def _mechanism(raw: str) -> Mechanism:
    mechanism = raw.upper()
    if mechanism == PLAIN:
        return PLAIN
    if mechanism == EXTERNAL:
        return EXTERNAL
    raise ConfigError(f"AMQP_URL option auth must be plain or external, got {raw!r}")


def _cadata(raw: str | None) -> bytes | None:
    if raw is None:
        return None
    try:
        return b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ConfigError(
            "AMQP_URL option cadata must be base64 (DER certificates; write + as %2B)"
        ) from exc


def _verify(raw: str) -> bool:
    # aiormq verifies only for "0": "false" or "no" would turn verification off. Only 0 and 1
    # are accepted, so nobody turns it off meaning to keep it.
    if raw not in ("0", "1"):
        raise ConfigError(f"AMQP_URL option no_verify_ssl must be 0 or 1, got {raw!r}")
    return raw == "0"
