"""The ingress's publishing connection logs in and tunes as the URL says, as aiormq would."""

from __future__ import annotations

import asyncio

from pamqp import commands as spec
from pamqp import frame as pamqp_frame

from ingress.amqp_wire import FrameReader
from ingress.publisher import ConfirmPublisher, Endpoint


class Wire(asyncio.Transport):
    """A transport that keeps what the publisher writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


async def answers_to(url: str, *frames: spec.Frame) -> list[object]:
    """The frames a publisher for ``url`` writes when the broker sends ``frames``."""
    endpoint = Endpoint.from_url(url)
    publisher = ConfirmPublisher(endpoint, "tests", "application/json", lambda _: None)
    wire = Wire()
    publisher.connection_made(wire)
    for frame in frames:
        publisher.data_received(pamqp_frame.marshal(frame, 0))
    await asyncio.sleep(0)  # writes leave on the next tick
    publisher.connection_lost(None)  # stops the heartbeat timer a Tune started
    assert isinstance(publisher.ready.exception(), ConnectionError)
    written = bytes(wire.written).removeprefix(b"AMQP\x00\x00\x09\x01")
    return [frame for _, frame in FrameReader().feed(written)]


async def test_auth_external_logs_in_with_an_empty_response() -> None:
    url = "amqps://127.0.0.1/?auth=external&certfile=client.pem"
    start = spec.Connection.Start(mechanisms="PLAIN EXTERNAL")

    (login,) = await answers_to(url, start)

    assert isinstance(login, spec.Connection.StartOk)
    assert (login.mechanism, login.response) == ("EXTERNAL", "")


async def test_plain_auth_logs_in_with_the_url_credentials() -> None:
    start = spec.Connection.Start(mechanisms="PLAIN EXTERNAL")

    (login,) = await answers_to("amqp://user:pass@127.0.0.1/", start)

    assert isinstance(login, spec.Connection.StartOk)
    assert (login.mechanism, login.response) == ("PLAIN", "\0user\0pass")


async def test_the_heartbeat_is_the_url_s_whatever_the_broker_proposes() -> None:
    tune = spec.Connection.Tune(heartbeat=60, frame_max=131_072)

    tune_ok, _open = await answers_to("amqp://127.0.0.1/?heartbeat=120", tune)

    assert isinstance(tune_ok, spec.Connection.TuneOk)
    assert tune_ok.heartbeat == 120
