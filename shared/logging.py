"""structlog configuration: one call from each entrypoint, with redaction built in.

Every record, structlog's and the standard library's (aiohttp.access, aio_pika, alembic), passes
through ``redact`` before it is rendered, so secrets, tokens, signatures and card numbers never
reach the output.
"""

from __future__ import annotations

import functools
import json as stdlib_json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.luhn import luhn_ok

REDACTED = "[REDACTED]"

_SECRET_WORDS = frozenset(
    {
        "secret",
        "password",
        "passwd",
        "token",
        "authorization",
        "signature",
        "cookie",
        "cvv",
        "cvc",
        "pan",
        "credential",
        "credentials",
        "apikey",
        "pin",
    }
)
_SECRET_PAIRS = (
    "api_key",
    "card_number",
    "security_code",
    "client_key",
    "private_key",
    "hmac_key",
    "signing_key",
    "webhook_key",
    "access_key",
    "encryption_key",
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
# 13-19 digits, optionally split by spaces or dashes: the shape of a PAN.
_CARD_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Cheap prefilter: a run that could start a PAN (ASCII text gets the faster, equal pattern).
_DIGIT_RUN = re.compile(r"\d[\d -]{11}")
_ASCII_DIGIT_RUN = re.compile(r"[0-9][0-9 -]{11}")
_SEPARATOR = re.compile(r"[ -]")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_URL_CREDENTIALS = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@")


def _mask_card(match: re.Match[str]) -> str:
    # Only Luhn-valid runs: masking every long digit run would mangle ids, amounts and times
    # in logs, and a number that fails Luhn cannot be charged.
    pan = _luhn_valid_stretch(match.group(0))
    return match.group(0) if pan is None else f"[CARD ****{pan[-4:]}]"


def _luhn_valid_stretch(run: str) -> str | None:
    """The run's digits if they pass Luhn, else any stretch of whole groups of 13-19 that does.

    A PAN can sit inside a longer grouped run ("4111 1111 1111 1111-01", or the digit-only
    start of a UUID); the run as a whole then fails Luhn while the PAN inside it would not.
    """
    digits = re.sub(r"\D", "", run)
    if luhn_ok(digits):
        return digits
    groups = _SEPARATOR.split(run)
    for start in range(len(groups)):
        for end in range(len(groups), start, -1):
            stretch = "".join(groups[start:end])
            if 13 <= len(stretch) <= 19 and luhn_ok(stretch):
                return stretch
    return None


def _suspect(text: str) -> bool:
    """Whether ``text`` could hold a PAN, a bearer token or URL credentials at all."""
    if "://" in text or "bearer" in text.lower():
        return True
    digit_run = _ASCII_DIGIT_RUN if text.isascii() else _DIGIT_RUN
    return digit_run.search(text) is not None


def redact_text(text: str) -> str:
    """Mask card-like numbers, bearer tokens and URL credentials inside free text."""
    if not _suspect(text):  # most log values are short ids
        return text
    text = _BEARER.sub("Bearer " + REDACTED, text)
    text = _URL_CREDENTIALS.sub(r"\1" + REDACTED + "@", text)
    return _CARD_LIKE.sub(_mask_card, text)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a field's name says it holds a secret (``x-api-key``, ``cardNumber``...)."""
    normal = _CAMEL.sub(r"\1_\2", key).lower().replace("-", "_")
    words = {word.removesuffix("s") for word in normal.split("_")} | set(normal.split("_"))
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in normal for pair in _SECRET_PAIRS)


def redact_value(key: str, value: Any) -> Any:
    """Redact one value: by its key's name, then by its content."""
    if is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    return value


# Set by the chain itself (or stdlib's record), never by a caller: nothing to redact in them.
_OWN_FIELDS = frozenset({"_record", "_from_structlog", "timestamp", "level", "logger"})


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field of the event.

    Plain strings are first scanned together, in one pass over their joined text (the
    separator cannot be part of a match): a clean line, the usual case, costs one scan.
    """
    texts: list[str] = []
    for key, value in event_dict.items():  # values are replaced in place: no new keys
        if value is None or key in _OWN_FIELDS:
            continue
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif type(value) is str:
            texts.append(value)
        elif type(value) not in _SCALARS:
            event_dict[key] = redact_value(key, value)
    if texts and _suspect("\n".join(texts)):
        for key, value in event_dict.items():
            if type(value) is str and key not in _OWN_FIELDS:
                event_dict[key] = redact_text(value)
    return event_dict


_SCALARS = frozenset({int, float, bool})


class _NamedWriter(structlog.WriteLogger):
    """structlog's line writer, carrying the name ``get_logger(name)`` gave it, so that
    the stock ``add_logger_name`` names structlog's lines as it names the standard library's."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _WriterFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriter:
        return _NamedWriter(self._file, str(args[0]) if args else "")


def _dumps(data: Any, **kw: Any) -> str:
    """JSON through orjson (a fraction of the stdlib's cost); the stdlib for what it refuses."""
    try:
        return orjson.dumps(
            data, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except (TypeError, orjson.JSONEncodeError):  # an int past 64 bits, say
        return stdlib_json.dumps(data, **kw)


def configure_logging(
    level: str = "INFO", *, json: bool = True, stream: TextIO | None = None
) -> None:
    """Render structlog and stdlib records through one redacting chain onto ``stream``.

    structlog events are written directly (no detour through ``logging``: it costs more than
    the webhook handler itself); stdlib records (aiohttp, aio_pika, alembic) go through
    ``ProcessorFormatter`` with the same processors, so both come out alike.
    """
    out = stream or sys.stdout
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*chain, renderer],
        logger_factory=_WriterFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=chain,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logging.basicConfig(handlers=[handler], level=numeric, force=True)
    # aiormq logs every reconnect attempt at WARNING with the URL; ours says it once.
    logging.getLogger("aiormq").setLevel(max(numeric, logging.ERROR))
