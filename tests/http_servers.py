"""Servers for the transport tests: a real aiohttp server that records its client connections,
and a raw asyncio server that writes exact bytes (split segments, cut bodies, dropped keep-alive
connections, interim answers) for misbehaviour no HTTP framework would produce."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer


class Peers:
    """The client connections an aiohttp server saw (by peer address)."""

    def __init__(self) -> None:
        self.seen: set[object] = set()
        self.open = 0
        self.most_open = 0


@asynccontextmanager
async def aiohttp_server(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, Peers]]:
    peers = Peers()

    @web.middleware
    async def track(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        assert request.transport is not None
        peers.seen.add(request.transport.get_extra_info("peername"))
        peers.open += 1
        peers.most_open = max(peers.most_open, peers.open)
        try:
            return await handler(request)
        finally:
            peers.open -= 1

    app = web.Application(middlewares=[track])
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=ssl_context)
    scheme = "https" if ssl_context else "http"
    try:
        yield (
            f"{scheme}://localhost:{server.port}" if ssl_context else str(server.make_url("")),
            peers,
        )
    finally:
        await server.close()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that writes exact bytes; `handler(reader, writer, n)` gets the connection number."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer, len(connections) - 1)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: part of several tests
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/x", connections
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and Content-Length body) off the wire."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def replying(*parts: bytes, close: bool = True) -> RawHandler:
    """A raw handler that reads one request and writes `parts` (each flushed on its own)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.005)
        if not close:
            await reader.read()

    return handler


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"got": body.decode(), "ua": request.headers.get("User-Agent")})
