"""AMQP 0-9-1 on the wire for the ingress's publisher: the publish frames, and inbound framing.

pamqp (the codec under aiormq and aio-pika) builds the same bytes through an object per field
and a lookup per value; the hot path here packs the three frames of a persistent, mandatory
publish directly. A property test checks every byte against pamqp. Everything that is not a
publish (the handshake, acks, returns, closes) is still encoded and decoded by pamqp.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from pamqp import frame as pamqp_frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader
from pamqp.heartbeat import Heartbeat

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_OVERHEAD = 8  # the 7-byte frame header and the frame-end octet
HEARTBEAT_FRAME = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END))
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
PERSISTENT = 2
MAX_HEADER_NAME_BYTES = 128  # pamqp truncates longer field names; we refuse them instead

_FRAME_HEADER = struct.Struct(">BHI")
_PUBLISH = struct.Struct(">HHH")  # class Basic (60), method Publish (40), reserved ticket
_CONTENT_HEADER = struct.Struct(">HHQH")  # class 60, weight 0, body size, property flags
_LONG = struct.Struct(">I")
# content-type, headers, delivery-mode and message-id, in the order the spec lists them
_PROPERTY_FLAGS = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 7)
_END = bytes((FRAME_END,))
_MANDATORY = b"\x01"
_ROUTE_CACHE_SIZE = 1024  # method frames kept per (exchange, routing key); event names are few

InboundFrame = Frame | ContentHeader | ContentBody | Heartbeat | ProtocolHeader
HeaderValue = str | int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: persistent, mandatory, with its message id and headers."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, HeaderValue]


class FramingError(Exception):
    """The peer sent bytes that are not AMQP frames; the connection cannot go on."""


def short_string(value: str) -> bytes:
    """An AMQP short string; ValueError past 255 bytes."""
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("an AMQP short string holds at most 255 bytes")
    return bytes((len(raw),)) + raw


def _integer(value: int) -> bytes:
    # The smallest signed type first, as pamqp does, so consumers decode the same types.
    if -128 <= value <= 127:
        return b"b" + struct.pack(">b", value)
    if -32768 <= value <= 32767:
        return b"s" + struct.pack(">h", value)
    if 0 <= value <= 65535:
        return b"u" + struct.pack(">H", value)
    if -(2**31) <= value < 2**31:
        return b"I" + struct.pack(">i", value)
    if 0 <= value < 2**32:
        return b"i" + struct.pack(">I", value)
    return b"l" + struct.pack(">q", value)  # struct.error past 64 bits


@functools.lru_cache(maxsize=256)  # header names are a handful of constants
def _field_name(key: str) -> bytes:
    name = short_string(key)
    if len(name) > MAX_HEADER_NAME_BYTES + 1:
        raise ValueError(f"header name {key!r} is longer than {MAX_HEADER_NAME_BYTES} bytes")
    return name


def field_table(headers: Mapping[str, HeaderValue]) -> bytes:
    """A field table of string and integer values, keys sorted as pamqp sorts them."""
    parts: list[bytes] = []
    for key in sorted(headers):
        value = headers[key]
        parts.append(_field_name(key))
        if isinstance(value, str):
            raw = value.encode()
            parts.append(b"S" + _LONG.pack(len(raw)) + raw)
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(_integer(value))
        else:
            raise TypeError(f"header {key!r}: only str and int values are published")
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


class PublishEncoder:
    """The frames of persistent, mandatory publishes on one channel, as one bytes object each."""

    def __init__(self, channel: int, frame_max: int, content_type: str) -> None:
        self.channel = channel
        self._max_payload = frame_max - FRAME_OVERHEAD
        self._content_type = short_string(content_type)
        self._routes: dict[tuple[str, str], bytes] = {}

    def _method_frame(self, exchange: str, routing_key: str) -> bytes:
        route = (exchange, routing_key)
        frame = self._routes.get(route)
        if frame is None:
            payload = (
                _PUBLISH.pack(60, 40, 0)
                + short_string(exchange)
                + short_string(routing_key)
                + _MANDATORY
            )
            frame = _FRAME_HEADER.pack(FRAME_METHOD, self.channel, len(payload)) + payload + _END
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[route] = frame
        return frame

    def encode(self, message: Outgoing) -> bytes:
        """Basic.Publish, the content header and the body frames of one message."""
        exchange, routing_key, body = message.exchange, message.routing_key, message.body
        message_id, headers = message.message_id, message.headers
        properties = (
            _CONTENT_HEADER.pack(60, 0, len(body), _PROPERTY_FLAGS)
            + self._content_type
            + field_table(headers)
            + b"\x02"  # delivery mode: persistent
            + short_string(message_id)
        )
        parts = [
            self._method_frame(exchange, routing_key),
            _FRAME_HEADER.pack(FRAME_HEADER, self.channel, len(properties)),
            properties,
            _END,
        ]
        step = self._max_payload
        for start in range(0, len(body), step):
            chunk = body[start : start + step] if len(body) > step else body
            parts += (_FRAME_HEADER.pack(FRAME_BODY, self.channel, len(chunk)), chunk, _END)
        return b"".join(parts)


def marshal(frame: Frame, channel: int) -> bytes:
    """A method frame that is not a publish, through pamqp."""
    return pamqp_frame.marshal(frame, channel)


class FrameReader:
    """Splits the inbound byte stream into frames and decodes each with pamqp."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, InboundFrame]]:
        """Every whole frame now buffered, as (channel, frame); FramingError on garbage."""
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, InboundFrame]] = []
        offset = 0
        while len(buffer) - offset >= FRAME_OVERHEAD - 1:
            kind, channel, size = _FRAME_HEADER.unpack_from(buffer, offset)
            if kind not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT):
                raise FramingError(f"unknown frame type {kind} (not an AMQP 0-9-1 peer?)")
            end = offset + size + FRAME_OVERHEAD
            if len(buffer) < end:
                break
            if buffer[end - 1] != FRAME_END:
                raise FramingError("a frame does not end with the frame-end octet")
            try:
                _, _, frame = pamqp_frame.unmarshal(bytes(buffer[offset:end]))
            except Exception as exc:  # pamqp raises several types for a malformed frame
                raise FramingError(f"undecodable frame: {exc}") from exc
            frames.append((channel, frame))
            offset = end
        del buffer[:offset]
        return frames
