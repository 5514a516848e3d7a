"""A TCP proxy on 127.0.0.1 that a test can cut, restore or stall: a broker outage on demand."""

from __future__ import annotations

import asyncio
import contextlib

from tests.ports import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut`` drops every connection and stops listening."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.stalled = False
        self.delay = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.upstream_traffic = asyncio.Event()
        self.upstream_chunks: list[bytes] = []  # what the client sent, read by read
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        """Stop listening and abort every proxied connection, as a broker crash would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        self._writers.clear()

    def slow_down(self, delay: float) -> None:
        """Hold every chunk ``delay`` seconds before forwarding it (order is kept)."""
        self.delay = delay
        self.upstream_traffic.clear()

    def stall(self) -> None:
        """Keep connections open but drop every byte: a dead peer the client cannot see."""
        self.stalled = True

    def freeze(self) -> None:
        """Stop reading from either side: socket buffers fill and the client's writes back up."""
        self._flowing.clear()

    def inject(self, data: bytes) -> None:
        """Send ``data`` to every client as if the broker had sent it (between whole frames)."""
        for client in self._clients:
            client.write(data)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, broker_w))
        self._clients.add(client_w)
        for reader, writer, upstream in ((client_r, broker_w, True), (broker_r, client_w, False)):
            task = asyncio.create_task(self._pipe(reader, writer, upstream=upstream))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        # Read as soon as data arrives (so each chunk is one write of the sender's, unmerged),
        # forward it ``delay`` later: a slow link, not a slow reader.
        late: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        forwarding = asyncio.create_task(self._forward(late, writer))
        loop = asyncio.get_running_loop()
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while (await self._flowing.wait()) and (data := await reader.read(65536)):
                    if upstream:
                        self.upstream_traffic.set()
                        self.upstream_chunks.append(data)
                    late.put_nowait((loop.time() + self.delay, data))
            late.put_nowait(None)
            await forwarding
        finally:
            forwarding.cancel()
            writer.transport.abort()
            self._writers.discard(writer)
            self._clients.discard(writer)

    async def _forward(
        self, late: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while (item := await late.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
                if not self.stalled:
                    writer.write(data)
                    await writer.drain()
