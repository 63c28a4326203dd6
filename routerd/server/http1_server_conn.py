"""One client connection of routerd's HTTP/1.1 server: an asyncio protocol that parses requests
with httptools (llhttp) and answers them strictly in order, one at a time.

It owns the message being received (target, raw headers, body parts, the body limit, the head
limit, `Expect: 100-continue`, `Upgrade`), the refusals (400, 431) and the start of the
connection's answering task. A client that goes away never cancels the running handler
(metering must run): its answer is dropped. Answering (the queue, replies, streams, the idle
timer, closing) lives in `http1_server_answer.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, cast

import httptools
import structlog
from multidict import CIMultiDict, CIMultiDictProxy

from routerd.server.http1_server_answer import Answering, Incoming
from routerd.server.http1_server_wire import (
    CONTINUE,
    HEAD_TOO_LARGE,
    INTERNAL,
    MALFORMED,
    split_target,
    without_upgrade,
)

if TYPE_CHECKING:
    from routerd.server.http1_server import Http1Server

log = structlog.get_logger("routerd")


class _Refused(Exception):
    """Raised in a parser callback to stop parsing (the status is in `_refusal`)."""


def _decode(raw: list[tuple[bytes, bytes]]) -> CIMultiDictProxy[str]:
    pairs = [
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in raw
    ]
    return CIMultiDictProxy(CIMultiDict(pairs))


class Http1ServerConnection(Answering):
    """The protocol of one accepted socket."""

    __slots__ = (
        "_head_read",
        "_in_head",
        "_incoming",
        "_parser",
        "_parts",
        "_raw",
        "_read_len",
        "_refusal",
        "_reparsing",
        "_size",
        "_target",
        "_upgrade",
    )

    def __init__(self, server: Http1Server) -> None:
        super().__init__(server)
        self._parser = httptools.HttpRequestParser(self)
        self._target = b""
        self._raw: list[tuple[bytes, bytes]] = []
        self._parts: list[bytes] = []
        self._size = 0
        self._in_head = False
        # the head being received: -1 while it began in the current read, else its bytes so
        # far (its part of the read it began in, then every whole read after that one)
        self._head_read = -1
        self._read_len = 0
        self._incoming: Incoming | None = None
        self._upgrade = False
        self._reparsing = False
        self._refusal = 0

    # --- asyncio protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server.conns.add(self)
        task = self._task = self._loop.create_task(self._serve())
        self._server.tasks.add(task)

    def data_received(self, data: bytes) -> None:
        if self._no_more and not self._early:
            return  # after a closing request, a refusal or at shutdown nothing more is read
        if not self._busy:
            self._idle_since = self._loop.time()
        self._read_len = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._in_head:  # this read ended inside a head (rare: most arrive in one read)
            read = self._head_read
            self._head_read = read + len(data) if read >= 0 else self._head_in(data)
            if self._head_read > self._max_head:
                self._refuse(431, HEAD_TOO_LARGE)

    def eof_received(self) -> bool | None:
        """The client closed its side: it is gone (as aiohttp sees it); the transport closes
        and answers still to come are dropped (the handler is not cancelled)."""
        self._no_more = True
        return None

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        if self._no_more and not self._early:
            return  # bytes after a `Connection: close` request: ignored, not malformed
        if self._refusal == 431:
            self._refuse(431, HEAD_TOO_LARGE)
        elif self._refusal or not isinstance(exc, httptools.HttpParserCallbackError):
            self._refuse(400, MALFORMED)
        else:  # one of our callbacks failed: a bug, not the client's fault
            log.error("unhandled_error", error=repr(exc.__context__))
            self._refuse(500, INTERNAL)

    def _upgraded(self, tail: bytes) -> None:
        """llhttp stopped at an `Upgrade` request (h2c, websocket): routerd serves it as
        plain HTTP/1.1, so its head is parsed again without the upgrade token, with the bytes
        that followed it (its body, more requests) behind it."""
        method = self._parser.get_method()
        if not self._upgrade or self._reparsing or method == b"CONNECT":
            self._refuse(400, MALFORMED)
            return
        self._upgrade = False
        head = without_upgrade(method, self._target, self._parser.get_http_version(), self._raw)
        self._parser = httptools.HttpRequestParser(self)
        self._reparsing = True
        try:
            self.data_received(head + tail)
        finally:
            self._reparsing = False

    # --- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = b""
        self._raw = []
        self._in_head = True
        self._head_read = -1

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        if parser.should_upgrade():
            self._upgrade = True
            return
        # measured when it spanned reads or its read is large enough to hold a head too large
        if (self._head_read >= 0 or self._read_len > self._max_head) and (
            self._head_size() > self._max_head
        ):
            self._refusal = 431
            raise _Refused
        try:
            path, query = split_target(self._target)
        except httptools.HttpParserInvalidURLError:
            self._refusal = 400
            raise _Refused from None
        headers = _decode(self._raw)
        method = parser.get_method().decode()
        req = Incoming(method, path, query, headers, self._app, None, None, self._opener)
        keep_alive = req.keep_alive = parser.should_keep_alive()
        # HTTP/1.1 is kept alive without a Connection header; 1.0 only with one
        req.http10 = (not keep_alive or "Connection" in headers) and (
            parser.get_http_version() == "1.0"
        )
        req.head_only = method == "HEAD"
        self._incoming = req
        self._size = 0
        length = headers.get("Content-Length")
        if length is not None and int(length) > self._max_body:
            self._dispatch_early(req)
        elif "Expect" in headers and headers["Expect"].lower() == "100-continue":
            if not self._busy:
                self.send(CONTINUE)
            else:
                self._continue_due = True  # after the answers before it

    def on_body(self, body: bytes) -> None:
        if self._early or self._upgrade:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._parts = []
            if self._incoming is not None:
                self._dispatch_early(self._incoming)
            return
        self._parts.append(body)

    def on_message_complete(self) -> None:
        if self._upgrade:
            return
        req = self._incoming
        self._incoming = None
        self._continue_due = False
        if self._early:
            self._early = False
            self._no_more = True
            if not self._busy:
                self._close()  # its answer went out while the body was being dropped
            return
        if req is None:
            return
        parts = self._parts
        if parts:
            req.arrived(parts[0] if len(parts) == 1 else b"".join(parts))
            self._parts = []
        else:
            req.arrived(b"")
        if not req.keep_alive:
            self._no_more = True
        self._enqueue(req)

    # --- requests -----------------------------------------------------------------------------

    def _dispatch_early(self, req: Incoming) -> None:
        """Over the body limit: answered at once (read() raises 413), the rest of its body
        is read and dropped, and the connection closes after it."""
        self._early = True
        req.keep_alive = False
        self._enqueue(req)

    def _head_in(self, data: bytes) -> int:
        """The bytes of `data` (a read that ended inside a head that began in it) that belong
        to that head: the read may also hold whole requests before it (a large pipelined body).

        llhttp does not say where a message began, and httptools hands over a header only once
        the next one starts (so `_head_size` misses the one in progress): the head is found from
        the end of the read by its request line (method, a space, the target). Not found (more
        spaces): the whole read counts. Found too late (a header value repeating it): never
        less than the parsed parts, and `on_headers_complete` measures the whole head again."""
        target = self._target
        if not target:  # still in the method: a few bytes
            return 0
        start = data.rfind(self._parser.get_method() + b" " + target)
        return max(len(data) - start if start >= 0 else len(data), self._head_size())

    def _head_size(self) -> int:
        """The head's parsed parts: the target and each header line (name, value, `: ` and
        the line end)."""
        size = len(self._target)
        for name, value in self._raw:
            size += len(name) + len(value) + 4
        return size
