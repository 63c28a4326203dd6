"""One upstream HTTP/1.1 connection: an asyncio protocol that writes a request with one
`transport.write` and parses the response with httptools (llhttp, the C parser uvicorn uses).

It owns the per-exchange state: status and raw headers, the body buffer (bounded: reading from
the socket pauses when `HIGH_WATER` bytes wait for a slow consumer and resumes when drained),
whether the message is complete and whether the connection may be reused (keep-alive), and the
failure that ended the exchange. Waiters are woken with plain results, never exceptions: the
reader looks at `exc` (so no future ever holds an unretrieved exception).
1xx interim answers (100 Continue) are skipped; a body without Content-Length or chunked
framing is read until the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import cast

import httptools

HIGH_WATER = 1 << 17  # body bytes buffered for a slow consumer before reads pause (as aiohttp)
MAX_HEAD = 1 << 16  # bytes of status line and headers (aiohttp allows 8 KiB a line)


class Http1Error(Exception):
    """A failure of the exchange itself (not a timeout): mapped by `http1.upstream_error`."""


class ConnectFailed(Http1Error):
    """The TCP connect or TLS handshake failed (the cause is chained)."""


class ConnectionClosed(Http1Error):
    """The upstream closed or reset the connection before the response was complete."""

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("the upstream closed the connection")
        self.got_bytes = got_bytes  # False: nothing of the response arrived (retryable once)


class MalformedResponse(Http1Error):
    """The response is not valid HTTP/1.1 (llhttp refused it)."""


class Connection(asyncio.Protocol):
    """A socket to one origin, serving one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False  # True once it came back to the pool after an exchange
        self.idle_since = 0.0
        self._active = False
        self._headers_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._interim = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.encoding: bytes | None = None
        self._buf: list[bytes] = []
        self._size = 0
        self._paused = False
        self._head_size = 0
        self.got_bytes = False
        self.headers_done = False
        self.done = False
        self.keep_alive = False
        self.exc: BaseException | None = None
        self._headers_due: float | None = None  # loop time the pending headers are late at
        self._due_timer: asyncio.TimerHandle | None = None
        self._due_timer_at = 0.0

    # --- asyncio protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (a unix socket): nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self._active or self.done:
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.set_exception(MalformedResponse("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self.set_exception(MalformedResponse(str(exc) or type(exc).__name__))
        if not self.headers_done:  # still in the head: bounded (one read's worth at most)
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self.set_exception(MalformedResponse("response headers too large"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._active or self.done:
            return
        if self.headers_done and self.exc is None and self._reads_until_close():
            self.done, self.keep_alive = True, False
            self._wake()
            return
        self.set_exception(ConnectionClosed(self.got_bytes))

    # --- llhttp callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        if len(name) == 16 and name.lower() == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim answer (100 Continue): the real one follows
            self._interim = True
            self.raw_headers = []
            self.encoding = None
            return
        self.status = status
        self.headers_done = True
        self._headers_due = None
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buf.append(body)
        self._size += len(body)
        if self._size > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        if self._body_waiter is not None:  # no call per chunk while nobody waits (one read)
            self._wake_body()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # --- the exchange -------------------------------------------------------------------------

    def begin(self, payload: bytes, headers_due: float | None = None) -> asyncio.Future[None]:
        """Write one request; the future resolves when the headers arrived or the exchange
        failed (then `exc` says why): a TimeoutError when they had not by `headers_due`."""
        self._active = True
        self.status = 0
        self.raw_headers = []
        self.encoding = None
        self._buf = []
        self._size = 0
        self._head_size = 0
        self.got_bytes = self.headers_done = self.done = self.keep_alive = False
        self.exc = None
        waiter = self._headers_waiter = self._loop.create_future()
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            self.set_exception(ConnectionClosed(False))
        else:
            transport.write(payload)
            if headers_due is not None:
                self._watch_headers(headers_due)
        return waiter

    def _watch_headers(self, due: float) -> None:
        """One timer serves the exchanges of this connection (IdleWatch's pattern, no timer per
        request): it is armed when none is, replaced only by an earlier deadline, and when it
        fires before the current one it is armed again for it."""
        self._headers_due = due
        timer = self._due_timer
        if timer is not None:
            if self._due_timer_at <= due:
                return
            timer.cancel()
        self._due_timer_at = due
        self._due_timer = self._loop.call_at(due, self._headers_late)

    def _headers_late(self) -> None:
        self._due_timer = None
        due = self._headers_due
        if due is None or not self._active:
            return  # the exchange it was armed for is answered or over
        if self._due_timer_at >= due:
            self.fail_timeout()
            return
        self._due_timer_at = due
        self._due_timer = self._loop.call_at(due, self._headers_late)

    def take(self) -> bytes:
        """All body bytes buffered so far (b"" when none); reading resumes if it was paused."""
        buf = self._buf
        if not buf:
            return b""
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        self._buf = []
        self._size = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def wait_body(self) -> asyncio.Future[None]:
        """A future that resolves when more body arrived, the message ended or it failed."""
        waiter = self._body_waiter = self._loop.create_future()
        return waiter

    def set_exception(self, exc: BaseException) -> None:
        """End the exchange with a failure (a timer's TimeoutError, a parse error, EOF): the
        first failure wins, the socket is dropped and every waiter woken."""
        if self.exc is None and not self.done:
            self.exc = exc
        self.close()
        self._wake()

    def fail_timeout(self) -> None:
        self.set_exception(TimeoutError())

    def finish(self) -> bool:
        """The exchange is over; True when the connection can serve another one."""
        self._active = False
        self._headers_due = None
        self._headers_waiter = self._body_waiter = None
        return self.done and self.keep_alive and not self._buf and not self.closed

    def close(self) -> None:
        self.closed = True
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _wake(self) -> None:
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None:
            self._body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _reads_until_close(self) -> bool:
        """No Content-Length and no chunked framing: the body ends when the server closes."""
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length":
                return False
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                return False
        return True
