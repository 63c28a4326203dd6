"""A streamed answer (`StreamSink`) on one connection of routerd's HTTP/1.1 server.

It owns the held head (sent with the first chunk in one write, or alone by `flush_head`, which
the connection schedules one loop turn after the stream was opened), the framing (chunked for
HTTP/1.1, the raw bytes up to the close for HTTP/1.0, nothing for HEAD) and the end of the
answer. Writes raise `ConnectionResetError` once the client is gone and wait while the socket's
write buffer is over its high-water mark (the connection's `pause_writing`).
"""

from __future__ import annotations

from typing import Protocol

from routerd.server.http1_server_wire import LAST_CHUNK, chunk


class Channel(Protocol):
    """What a stream needs of its connection."""

    @property
    def lost(self) -> bool: ...

    @property
    def write_paused(self) -> bool: ...

    def send(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


def gone() -> ConnectionResetError:
    return ConnectionResetError("the client closed the connection")


class Http1Stream:
    """Chunks of one answer, written as the handler makes them."""

    __slots__ = ("_channel", "_chunked", "_head", "_with_body", "ended")

    def __init__(self, channel: Channel, head: bytes, chunked: bool, with_body: bool) -> None:
        self._channel = channel
        self._head: bytes | None = head
        self._chunked = chunked
        self._with_body = with_body
        self.ended = False

    @property
    def started(self) -> bool:
        """True once the head went out (nothing else can be answered then)."""
        return self._head is None

    def flush_head(self) -> None:
        """Send the head alone if no chunk took it yet (scheduled by the connection)."""
        head = self._head
        if head is not None and not self.ended:
            self._head = None
            self._channel.send(head)

    def drop(self) -> None:
        """The handler answered otherwise before anything was sent: this stream is void."""
        self._head = None
        self.ended = True

    async def write(self, data: bytes) -> None:
        channel = self._channel
        if channel.lost:
            raise gone()
        if self.ended:
            raise RuntimeError("write after write_eof")
        payload = self._frame(data)
        head = self._head
        if head is not None:
            self._head = None
            payload = head + payload
        if payload:
            channel.send(payload)
        if channel.write_paused:
            await channel.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        if self.ended:
            return
        if self._channel.lost:
            raise gone()
        self.finish(data)

    def finish(self, data: bytes = b"") -> None:
        """Send `data`, the end of the body and the head if it is still held, in one write."""
        self.ended = True
        payload = self._frame(data)
        if self._chunked and self._with_body:
            payload += LAST_CHUNK
        head = self._head
        if head is not None:
            self._head = None
            payload = head + payload
        if payload:
            self._channel.send(payload)

    def _frame(self, data: bytes) -> bytes:
        if not data or not self._with_body:
            return b""
        return chunk(data) if self._chunked else data
