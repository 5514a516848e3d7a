"""A TCP proxy on loopback that can be cut: every connection through it drops at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_OVERLAP = 512


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target; ``cut()`` drops all links and refuses new ones."""

    def __init__(
        self, target_host: str, target_port: int, on_reply: Callable[[bytes], None] | None = None
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.on_reply = on_reply  # sees the target's bytes (with some overlap between calls)
        self.port = 0
        self._open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def is_open(self) -> bool:
        return self._open

    def cut(self) -> None:
        """Drop every connection now (an RST, like a dead peer) and refuse new ones."""
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if not self._open:
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst, tee in ((reader, up_writer, None), (up_reader, writer, self.on_reply)):
            task = asyncio.create_task(self._pipe(src, dst, tee))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        tee: Callable[[bytes], None] | None,
    ) -> None:
        tail = b""
        try:
            while chunk := await src.read(65536):
                if tee is not None:
                    tee(tail + chunk)
                    tail = chunk[-_OVERLAP:]
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(dst)
            with contextlib.suppress(ConnectionError, OSError):
                dst.close()


class ThreadedProxy:
    """A TcpProxy on its own event loop in a thread, so test load never starves it."""

    def __init__(
        self, target_host: str, target_port: int, on_reply: Callable[[bytes], None] | None = None
    ) -> None:
        self._proxy = TcpProxy(target_host, target_port, on_reply)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._proxy.port

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> int:
        self._thread.start()
        return self._call(self._proxy.start())

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.restore)

    def close(self) -> None:
        self._call(self._proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
