"""The paced fake OpenAI upstream: a raw asyncio HTTP/1.1 server whose frames cost little.

Every POST answers a `chat.completion.chunk` SSE stream (chunked transfer encoding, keep-alive)
of `chunks` chunks `pace` apart: chunk 0 carries the assistant role, every chunk but the last
has the content `T<monotonic ns at write, 20 digits> ` (what `streams.py` computes jitter from),
the last one is empty with `finish_reason: stop`; then a usage chunk when
`stream_options.include_usage` is set, and `data: [DONE]`. A POST without `"stream": true` gets a
400; any GET answers 200 `ok`.

One shared ticker drives every stream: a timer every 1 ms (uvloop's timer resolution) on an
absolute schedule (lateness does not accumulate) writes the frames of the due slots of a timing
wheel of `pace / 1 ms` slots. A new stream joins the least busy slot (the soonest of equals), so
streams are staggered over the pace instead of all writing in one burst; its chunk 0 goes out
when its slot comes up. The ticker only runs while streams are open. Per frame this costs one
`%` format and one `transport.write`: no task, no timer, no aiohttp writer.

Only what the bench clients send is parsed: request line, headers (Content-Length,
`Connection: close`), the JSON body; no pipelining, no chunked request bodies.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import orjson

_CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,'
    b'"model":"gpt-bench","choices":[{"index":0,"delta":{%b"content":"T%%020d "},'
    b'"finish_reason":null}]}\n\n'
)
_ROLE = b'"role":"assistant",'
_LAST = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,'
    b'"model":"gpt-bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)
_USAGE = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,'
    b'"model":"gpt-bench","choices":[],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}\n\n'
)
_DONE = b"data: [DONE]\n\n"
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_BAD = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\r\n"
    b'{"error":{"message":"paced port: streams only","type":"bad"}}\n'
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _frame(role: bytes) -> bytes:
    """A chunked-encoded content chunk, `%d` left for its stamp (20 digits, so the length of the
    chunk is known in advance and a frame costs one `%` format)."""
    body = _CHUNK % role
    return b"%x\r\n" % (len(body) - len(b"%020d") + 20) + body + b"\r\n"


_FIRST, _OTHER = _frame(_ROLE), _frame(b"")


class _Stream:
    __slots__ = ("conn", "sent", "usage")

    def __init__(self, conn: _Conn, usage: bool) -> None:
        self.conn, self.sent, self.usage = conn, 0, usage


class Ticker:
    """The timing wheel: `slots` lists of streams; one slot is written per tick."""

    def __init__(self, chunks: int, pace: float, tick: float = 0.001) -> None:
        self.chunks = chunks
        self.nslots = max(1, round(pace / tick))
        self.tick = pace / self.nslots
        self.wheel: list[list[_Stream]] = [[] for _ in range(self.nslots)]
        self.open = 0
        self.t0 = 0.0
        self.done_ticks = 0  # ticks processed since t0
        self.handle: asyncio.TimerHandle | None = None

    def add(self, conn: _Conn, usage: bool) -> None:
        if self.handle is None:  # idle: start a fresh schedule
            self.t0, self.done_ticks = time.monotonic(), 0
            self._schedule(self.t0)
        order = [(self.done_ticks + 1 + i) % self.nslots for i in range(self.nslots)]
        slot = min(order, key=lambda k: len(self.wheel[k]))  # the least busy, soonest first
        self.wheel[slot].append(_Stream(conn, usage))
        self.open += 1

    def _schedule(self, now: float) -> None:
        # uvloop's timers and loop.time() have 1 ms resolution: a sub-ms delay rounds to 0 and
        # the loop would spin until the tick is due, so sleep at least ~1 ms (late slots are
        # written on the next wakeup; every frame is stamped when it is actually written)
        delay = self.t0 + (self.done_ticks + 1) * self.tick - now
        loop = asyncio.get_running_loop()
        self.handle = loop.call_later(max(delay, 0.0006), self._run)

    def _run(self) -> None:
        now = time.monotonic()
        due = int((now - self.t0) / self.tick)
        first = max(self.done_ticks + 1, due - self.nslots + 1)  # late: each slot once
        for k in range(first, due + 1):
            self._write_slot(k % self.nslots)
        self.done_ticks = max(self.done_ticks, due)
        if self.open:
            self._schedule(now)
        else:
            self.handle = None

    def _write_slot(self, slot: int) -> None:
        streams = self.wheel[slot]
        if not streams:
            return
        # the slot's new list: a stream added meanwhile (finished() -> a queued request) joins it
        self.wheel[slot] = keep = []
        last = self.chunks - 1
        first, other = _FIRST, _OTHER
        for s in streams:
            transport = s.conn.transport
            if transport is None or transport.is_closing():
                self.open -= 1
                continue
            if s.sent < last:
                transport.write((other if s.sent else first) % time.monotonic_ns())
                s.sent += 1
                keep.append(s)
                continue
            tail = _chunked(_LAST) + (_chunked(_USAGE) if s.usage else b"")
            transport.write(tail + _chunked(_DONE) + b"0\r\n\r\n")
            self.open -= 1
            s.conn.finished()


class _Conn(asyncio.Protocol):
    """One client connection: parses requests, hands streams to the ticker."""

    def __init__(self, ticker: Ticker) -> None:
        self.ticker = ticker
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.streaming = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next_request()

    def _next_request(self) -> None:
        if self.streaming or self.transport is None:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length, close = 0, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        self.close_after = close
        self._answer(head[0].split(" ", 1)[0], body)

    def _answer(self, method: str, body: bytes) -> None:
        assert self.transport is not None
        if method != "POST":
            self._reply(_OK)
            return
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict) or not req.get("stream"):
            self._reply(_BAD)
            return
        self.streaming = True
        self.transport.write(_HEAD)
        usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self.ticker.add(self, usage)

    def _reply(self, raw: bytes) -> None:
        assert self.transport is not None
        self.transport.write(raw)
        self.finished()

    def finished(self) -> None:
        """The response is written: close or serve the next request."""
        self.streaming = False
        if self.transport is None:
            return
        if self.close_after:
            self.transport.close()
            return
        self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int, chunks: int, pace: float) -> asyncio.Server:
    """Start the paced server on `host:port` (the caller keeps the loop running)."""
    ticker = Ticker(chunks, pace)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Conn(ticker), host, port, backlog=4096)
