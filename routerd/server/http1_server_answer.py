"""The answering half of a connection of routerd's HTTP/1.1 server (`Answering`, the base of
`Http1ServerConnection`, which adds the parsing).

It owns what happens once a request is complete: the queue of complete requests waiting for
their turn (reading pauses when `PIPELINE_DEPTH` wait), the connection's one task (it waits on
a future while idle, then calls the dispatcher for each request in turn: no task per request),
the reply (head and body in one write; HEAD gets the head; a header with a line break is
refused with 500), the stream sink a handler opens, the dispatcher's own failures (logged as
`unhandled_error`, answered 500 when nothing was sent yet, else the connection is dropped),
what follows an answer (keep-alive, close, 100 Continue for a request that waited), the idle
timer and the connection's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from routerd.errors import ErrorCode, RouterdError
from routerd.server.http import Answer, Reply, Request, StreamSink
from routerd.server.http1_server_stream import Http1Stream, gone
from routerd.server.http1_server_wire import (
    CHUNKED,
    CLOSE,
    CONTINUE,
    INTERNAL,
    KEEP_ALIVE,
    canned,
    no_body,
    reply_head,
)

if TYPE_CHECKING:
    from routerd.server.http1_server import Http1Server

log = structlog.get_logger("routerd")

PIPELINE_DEPTH = 4  # complete requests waiting for their turn before reading pauses
LINGER = 10.0  # seconds an over-limit body is still read (and dropped) after its answer


class Incoming(Request):
    """A request as the server queues it: the seam's fields and what answering it needs."""

    __slots__ = ("head_only", "http10", "keep_alive")

    head_only: bool  # HEAD: the answer's head only
    http10: bool  # an HTTP/1.0 client: no chunked streams
    keep_alive: bool  # the connection stays open after the answer

    def arrived(self, body: bytes) -> None:
        """The whole body is here (the request is complete)."""
        self._body = body


class Answering(asyncio.Protocol):
    """Answers of one connection, strictly in the order the requests arrived."""

    __slots__ = (
        "_app",
        "_busy",
        "_closed",
        "_closing",
        "_continue_due",
        "_current",
        "_dispatch",
        "_drain",
        "_early",
        "_idle_since",
        "_idle_timer",
        "_keepalive",
        "_last_word",
        "_loop",
        "_max_body",
        "_max_head",
        "_no_more",
        "_opener",
        "_queue",
        "_read_paused",
        "_server",
        "_stream",
        "_task",
        "_transport",
        "_waiter",
        "lost",
        "write_paused",
    )

    def __init__(self, server: Http1Server) -> None:
        self._server = server
        self._loop = server.loop
        self._dispatch = server.dispatch
        self._app = server.app
        self._max_body = server.max_body_bytes
        self._max_head = server.max_head_bytes
        self._keepalive = server.keepalive_timeout
        self._opener = self._open_stream
        self._transport: asyncio.Transport
        self._queue: deque[Incoming] = deque()
        self._task: asyncio.Task[None] | None = None  # the connection's answering task
        self._waiter: asyncio.Future[Incoming | None] | None = None  # it waits (idle) on it
        self._busy = False  # a request is queued or being answered
        self._current: Incoming | None = None
        self._stream: Http1Stream | None = None
        self._read_paused = False
        self._continue_due = False
        self._early = False  # dispatched at once (over the body limit): the rest is dropped
        self._last_word: bytes | None = None  # a refusal sent after the queued answers
        self._no_more = False  # no further request is read: close after the queued answers
        self._closing = False  # the server is shutting down
        self._closed = False  # closed by us or lost: nothing more is written
        self.lost = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # --- the answering task -------------------------------------------------------------------

    async def _serve(self) -> None:
        """The connection's task: answers each request in turn, waits while it is idle."""
        try:
            while True:
                req = self._queue.popleft() if self._queue else await self._idle()
                if req is None:
                    return  # the connection is closed
                if self._read_paused and len(self._queue) <= 1:
                    self._read_paused = False
                    self._transport.resume_reading()
                await self._answer(req)
                if self.write_paused and not self.lost:  # a client that does not read
                    with contextlib.suppress(ConnectionResetError):  # gets no more answers
                        await self.drain()  # until it does (its requests wait, unread)
                if not self._keep_going(req):
                    return
        except Exception:  # a bug in writing the answer: never leave the task's error unread
            log.exception("unhandled_error")
            self.abort()
        finally:
            self._busy = False
            task = self._task
            self._task = None
            if task is not None:
                self._server.task_done(task)

    async def _answer(self, req: Incoming) -> None:
        self._current = req
        self._stream = None
        try:
            answer = await self._dispatch(req)
        except asyncio.CancelledError:
            self._unhandled(req)
            raise
        except Exception:
            self._unhandled(req)
            return
        self._write_answer(req, answer)
        if type(answer) is Reply and answer.after is not None:
            try:  # the reply is out: a failure here is logged, the next request goes on
                await answer.after()
            except Exception:
                log.exception("unhandled_error", method=req.method, path=req.path)

    def _unhandled(self, req: Incoming) -> None:
        log.exception("unhandled_error", method=req.method, path=req.path)
        self._fail()

    def _fail(self) -> None:
        """Answer 500 and close when nothing of an answer was sent yet, else drop the socket."""
        stream = self._stream
        if stream is not None and stream.started:
            self.abort()
            return
        if stream is not None:
            stream.drop()
        self.send(canned(500, INTERNAL, self._server.date.now()))
        self._shut()

    def _write_answer(self, req: Incoming, answer: Answer) -> None:
        stream = self._stream
        if isinstance(answer, Reply):
            if stream is not None:
                if stream.started:
                    self.abort()  # its head went out: another answer cannot follow
                    return
                stream.drop()
            self._send_reply(req, answer)
        elif answer is stream and stream is not None:
            if not stream.ended:
                stream.finish()
        else:
            log.error("unhandled_error", reason="the answer is not this request's stream")
            self._fail()

    def _send_reply(self, req: Incoming, reply: Reply) -> None:
        if self._closed:
            return  # the client is gone: the answer is dropped
        status = reply.status
        body = b"" if no_body(status) else reply.body
        keep = req.keep_alive and not self._closing
        connection = (KEEP_ALIVE if req.http10 else "") if keep else CLOSE
        length = "" if no_body(status) else f"Content-Length: {len(body)}\r\n"
        framing = f"{length}Date: {self._server.date.now()}\r\n{connection}\r\n"
        head = reply_head(status, reply.headers, framing)
        if head is None:
            log.error("unsafe_header", status=status, method=req.method, path=req.path)
            self.send(canned(500, INTERNAL, self._server.date.now()))
            self._shut()
            return
        self._transport.write(head + body if body and not req.head_only else head)

    def _keep_going(self, req: Incoming) -> bool:
        """After an answer: False when the connection is (being) closed."""
        self._current = None
        self._stream = None
        if self._closed:
            return False
        if not req.keep_alive or self._closing:
            if self._early:  # its body is still arriving: drop it a while
                self._loop.call_later(LINGER, self._close)
            else:
                self._close()
            return False
        if not self._queue and (self._last_word is not None or self._no_more):
            if self._last_word is not None:
                self.send(self._last_word)
            self._close()
            return False
        return True

    def _idle(self) -> asyncio.Future[Incoming | None]:
        """Nothing to answer: the future the next complete request (or None, closed) comes
        in."""
        self._busy = False
        waiter = self._waiter = self._loop.create_future()
        if self._closed:
            waiter.set_result(None)
            return waiter
        self._go_idle()
        if self._continue_due:
            self._continue_due = False
            self.send(CONTINUE)
        if self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()
        return waiter

    def _enqueue(self, req: Incoming) -> None:
        self._busy = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(req)
                return
        queue = self._queue
        queue.append(req)
        if len(queue) >= PIPELINE_DEPTH and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def _wake_idle(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- streams ------------------------------------------------------------------------------

    def _open_stream(self, status: int, headers: Mapping[str, str]) -> StreamSink:
        req = self._current
        if req is None or self._stream is not None:
            raise RuntimeError("a stream is opened once, by the request being answered")
        chunked = not req.http10  # HTTP/1.0: the body ends when the connection closes
        keep = req.keep_alive = req.keep_alive and chunked and not self._closing
        framing = f"{CHUNKED if chunked else ''}Date: {self._server.date.now()}\r\n"
        head = reply_head(status, headers, f"{framing}{'' if keep else CLOSE}\r\n")
        if head is None:
            log.error("unsafe_header", status=status, method=req.method, path=req.path)
            raise RouterdError(ErrorCode.internal_error, "a reply header holds a line break")
        stream = self._stream = Http1Stream(self, head, chunked, not req.head_only)
        self._loop.call_soon(stream.flush_head)
        return stream

    def send(self, data: bytes) -> None:
        if not self._closed:
            self._transport.write(data)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    async def drain(self) -> None:
        """Wait until the client read enough of what was written (or went away)."""
        if self.lost:
            raise gone()
        if not self.write_paused:
            return
        waiter = self._drain
        if waiter is None or waiter.done():
            waiter = self._drain = self._loop.create_future()
        await waiter
        if self.lost:
            raise gone()

    def _wake_drain(self) -> None:
        waiter = self._drain
        self._drain = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- idle timer, refusals and closing -----------------------------------------------------

    def _go_idle(self) -> None:
        now = self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_at(now + self._keepalive, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self._closed or self._busy:
            return  # busy: armed again when it is idle
        due = self._idle_since + self._keepalive
        if self._loop.time() >= due:
            self._close()
        else:
            self._idle_timer = self._loop.call_at(due, self._idle_check)

    def _refuse(self, status: int, body: bytes) -> None:
        """A request that cannot be parsed: answered (after the queued ones) and closed."""
        self._no_more = True
        if not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        word = canned(status, body, self._server.date.now())
        if not self._busy:
            self.send(word)
            self._close()
        else:
            self._last_word = word

    def _shut(self) -> None:
        self._no_more = True
        self._queue.clear()
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()
            self._wake_idle()

    def abort(self) -> None:
        self._closed = True
        self._queue.clear()
        self._transport.abort()
        self._wake_idle()

    def shutdown(self) -> None:
        """The server is closing: an idle connection closes now, a busy one after its answer
        (which says `Connection: close`)."""
        self._closing = True
        self._no_more = True
        if not self._busy:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._closed = True
        self._queue.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._wake_drain()
        self._wake_idle()
        self._server.connection_done(self)
