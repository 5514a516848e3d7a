"""The ingress's AMQP wire codec: publish frames byte-equal to pamqp's, inbound framing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from ingress.amqp_wire import (
    FRAME_OVERHEAD,
    FrameReader,
    FramingError,
    Outgoing,
    PublishEncoder,
    field_table,
)
from ingress.publisher import Endpoint
from shared.errors import ConfigError

short_text = st.text(max_size=40).filter(lambda t: len(t.encode()) <= 255)
exchange_names = st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True)  # what pamqp allows
header_names = st.text(min_size=1, max_size=30).filter(lambda t: len(t.encode()) <= 128)
header_values = st.one_of(st.text(max_size=60), st.integers(-(2**63), 2**63 - 1))


def pamqp_publish(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    message_id: str,
    headers: dict[str, str | int],
    frame_max: int,
) -> bytes:
    """The same publish as aiormq builds it, through pamqp's objects."""
    properties = spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        headers=headers,  # type: ignore[arg-type]
    )
    frames = [
        pamqp_frame.marshal(
            spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True), channel
        ),
        pamqp_frame.marshal(ContentHeader(0, len(body), properties), channel),
    ]
    step = frame_max - FRAME_OVERHEAD
    for start in range(0, len(body), step):
        frames.append(pamqp_frame.marshal(ContentBody(body[start : start + step]), channel))
    return b"".join(frames)


@given(
    channel=st.integers(1, 65535),
    exchange=exchange_names,
    routing_key=short_text,
    body=st.binary(max_size=3000),
    message_id=short_text.filter(bool),
    headers=st.dictionaries(header_names, header_values, max_size=6),
    frame_max=st.integers(4096 + FRAME_OVERHEAD, 131_072) | st.just(600),
)
def test_publish_frames_are_byte_equal_to_pamqps(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    message_id: str,
    headers: dict[str, str | int],
    frame_max: int,
) -> None:
    encoder = PublishEncoder(channel, frame_max, "application/json")
    ours = encoder.encode(Outgoing(exchange, routing_key, body, message_id, headers))
    assert ours == pamqp_publish(
        channel, exchange, routing_key, body, message_id, headers, frame_max
    )


def test_a_header_name_past_128_bytes_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError, match="longer than 128"):
        field_table({"x" * 129: "v"})


def test_a_non_string_non_integer_header_is_refused() -> None:
    with pytest.raises(TypeError, match="only str and int"):
        field_table({"flag": True})


def test_a_message_id_past_255_bytes_is_refused() -> None:
    encoder = PublishEncoder(1, 131_072, "application/json")
    with pytest.raises(ValueError, match="255 bytes"):
        encoder.encode(Outgoing("ex", "rk", b"{}", "m" * 256, {}))


inbound = st.lists(
    st.sampled_from(
        [
            (1, spec.Basic.Ack(delivery_tag=7, multiple=True)),
            (1, spec.Basic.Nack(delivery_tag=9)),
            (1, spec.Basic.Return(312, "NO_ROUTE", "ex", "rk")),
            (0, spec.Connection.Blocked("low on memory")),
            (1, ContentBody(b"a body")),
        ]
    ),
    min_size=1,
    max_size=12,
)


@given(frames=inbound, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_inbound_frames_come_out_whole_however_the_stream_is_cut(
    frames: list[tuple[int, spec.Basic.Ack]], cuts: list[int]
) -> None:
    stream = b"".join(pamqp_frame.marshal(frame, channel) for channel, frame in frames)
    reader = FrameReader()
    seen = []
    edges = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(edges):
        seen += reader.feed(stream[start:end])
    assert [(channel, type(frame)) for channel, frame in seen] == [
        (channel, type(frame)) for channel, frame in frames
    ]


def test_bytes_that_are_not_amqp_frames_raise_a_framing_error() -> None:
    with pytest.raises(FramingError):
        FrameReader().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_a_frame_without_its_end_octet_raises_a_framing_error() -> None:
    frame = bytearray(pamqp_frame.marshal(spec.Basic.Ack(delivery_tag=1), 1))
    frame[-1] = 0
    with pytest.raises(FramingError, match="frame-end"):
        FrameReader().feed(bytes(frame))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", ("127.0.0.1", 5672, "guest", "/", False, 60)),
        ("amqp://u:p%40ss@broker/%2F", ("broker", 5672, "u", "/", False, 60)),
        ("amqps://u:p@broker/payments?heartbeat=15", ("broker", 5671, "u", "payments", True, 15)),
    ],
)
def test_amqp_urls_give_host_port_login_vhost_tls_and_heartbeat(
    url: str, expected: tuple[str, int, str, str, bool, int]
) -> None:
    endpoint = Endpoint.from_url(url)
    got = (
        endpoint.host,
        endpoint.port,
        endpoint.username,
        endpoint.vhost,
        endpoint.tls,
        endpoint.heartbeat,
    )
    assert got == expected


def test_a_url_with_a_percent_encoded_password_is_decoded() -> None:
    assert Endpoint.from_url("amqp://u:p%40ss@broker/").password == "p@ss"


def test_a_url_that_is_not_amqp_is_refused() -> None:
    with pytest.raises(ConfigError, match="amqp://"):
        Endpoint.from_url("http://broker/")
