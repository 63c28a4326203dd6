"""A test dispatch for routerd's HTTP/1.1 server (`Http1Server`), the server started on it, and
a raw client that reads answers byte-exactly (status, headers, Content-Length, chunked or
close-delimited bodies).

Routes (by path): `/stream` (a few SSE chunks), `/stream-open` (the head, then the chunks only
once `release` is set), `/stream-no-eof` (returns the sink without ending it), `/stream-big`
(many large chunks), `/stream-cut` (writes until the client is gone, then finishes),
`/big-reply` (32 MiB in one reply), `/slow` (answers once `release` is set), `/raise` (the
dispatch fails), `/bad-header` (a reply header with a line break), `/bad-stream-header`;
anything else echoes method, path, query, headers and body as JSON (or the 413 error when the
body is over the limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
from aiohttp import web
from multidict import CIMultiDict

from routerd.errors import RouterdError, openai_envelope
from routerd.server.http import JSON_HEADERS, Answer, Reply, Request, json_reply
from routerd.server.http1_server import Http1Server

MAX_BODY = 1024
BIG_CHUNK = 1 << 18  # 256 KiB
BIG_CHUNKS = 128  # 32 MiB: far more than loopback socket buffers hold


class Rig:
    """The dispatch and what the tests observe of it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.client_gone = asyncio.Event()
        self.seen: list[str] = []
        self.second = asyncio.Event()  # a second request was dispatched
        self.in_flight = 0
        self.most_in_flight = 0
        self.errors: list[BaseException] = []
        self.routes: dict[str, Callable[[Request], Awaitable[Answer]]] = {
            "/stream": self.stream,
            "/stream-open": self.stream_open,
            "/stream-no-eof": self.stream_no_eof,
            "/stream-big": self.stream_big,
            "/stream-cut": self.stream_cut,
            "/big-reply": self.big_reply,
            "/slow": self.slow,
            "/raise": self.fail,
            "/bad-header": self.bad_header,
            "/bad-stream-header": self.bad_stream_header,
        }

    async def dispatch(self, req: Request) -> Answer:
        self.seen.append(req.path)
        if len(self.seen) == 2:
            self.second.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.routes.get(req.path, self.echo)(req)
        except asyncio.CancelledError as exc:
            self.errors.append(exc)
            raise
        finally:
            self.in_flight -= 1

    async def echo(self, req: Request) -> Answer:
        try:
            body = await req.read()
        except RouterdError as err:
            return json_reply(openai_envelope(err, ""), err.status)
        return json_reply(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query_string,
                "headers": list(req.headers.items()),
                "body": body.decode("latin-1"),
            }
        )

    async def stream(self, req: Request) -> Answer:
        sink = req.open_stream(200, {"Content-Type": "text/event-stream"})
        await sink.write(b"data: 1\n\n")
        await sink.write(b"data: 2\n\n")
        await sink.write_eof(b"data: [DONE]\n\n")
        return sink

    async def stream_open(self, req: Request) -> Answer:
        sink = req.open_stream(200, {"Content-Type": "text/event-stream"})
        self.started.set()
        await self.release.wait()
        await sink.write_eof(b"data: late\n\n")
        return sink

    async def stream_no_eof(self, req: Request) -> Answer:
        sink = req.open_stream(200, {"Content-Type": "text/event-stream"})
        await sink.write(b"data: only\n\n")
        return sink

    async def stream_big(self, req: Request) -> Answer:
        sink = req.open_stream(200, {"Content-Type": "application/octet-stream"})
        for _ in range(BIG_CHUNKS):
            await sink.write(b"x" * BIG_CHUNK)
        self.finished.set()
        await sink.write_eof()
        return sink

    async def stream_cut(self, req: Request) -> Answer:
        """Writes until the client is gone; the rest of the handler (metering) still runs."""
        sink = req.open_stream(200, {"Content-Type": "text/event-stream"})
        await sink.write(b"data: first\n\n")
        await self.client_gone.wait()
        try:
            for _ in range(1000):
                await sink.write(b"data: more\n\n")
                await asyncio.sleep(0.005)
        except ConnectionResetError as exc:
            self.errors.append(exc)
        self.finished.set()
        return sink

    async def big_reply(self, req: Request) -> Answer:
        return Reply(b"x" * (BIG_CHUNK * BIG_CHUNKS))

    async def slow(self, req: Request) -> Answer:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.finished.set()
            raise
        self.finished.set()
        return Reply(b'{"slow":true}', headers=JSON_HEADERS)

    async def fail(self, req: Request) -> Answer:
        raise RuntimeError("a bug in the dispatcher")

    async def bad_header(self, req: Request) -> Answer:
        return Reply(b"{}", headers={"X-Evil": "a\r\nSet-Cookie: owned=1"})

    async def bad_stream_header(self, req: Request) -> Answer:
        try:
            req.open_stream(200, {"X-Evil": "a\nb"})
        except RouterdError as err:
            return json_reply(openai_envelope(err, ""), err.status)
        return Reply(b"opened")


@asynccontextmanager
async def serving(
    rig: Rig,
    keepalive_timeout: float = 75.0,
    max_head_bytes: int = 65536,
    max_body_bytes: int = MAX_BODY,
) -> AsyncIterator[Http1Server]:
    server = Http1Server(
        web.Application(),
        rig.dispatch,
        max_body_bytes=max_body_bytes,
        keepalive_timeout=keepalive_timeout,
        max_head_bytes=max_head_bytes,
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        rig.release.set()
        await server.close(1.0)


class RawAnswer:
    """One answer read off the wire."""

    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, object]:
        data = orjson.loads(self.body)
        assert isinstance(data, dict)
        return data


async def read_head(reader: asyncio.StreamReader) -> tuple[int, CIMultiDict[str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers.add(name, value.strip())
    return int(status), headers


async def read_chunks(reader: asyncio.StreamReader) -> list[bytes]:
    chunks = []
    while True:
        size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 5), 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        assert data.endswith(b"\r\n")
        if size == 0:
            return chunks
        chunks.append(data[:-2])


async def read_answer(reader: asyncio.StreamReader, head_only: bool = False) -> RawAnswer:
    status, headers = await read_head(reader)
    if head_only:
        return RawAnswer(status, headers, b"")
    if "Content-Length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["Content-Length"])), 5)
    elif headers.get("Transfer-Encoding") == "chunked":
        body = b"".join(await read_chunks(reader))
    else:
        body = await asyncio.wait_for(reader.read(), 5)
    return RawAnswer(status, headers, body)


@asynccontextmanager
async def raw(
    server: Http1Server,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection (nothing more to read)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True
