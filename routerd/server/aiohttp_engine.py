"""aiohttp's server as an engine (`server: aiohttp` in routerd.yaml): one catch-all aiohttp route
turns each `web.Request` into routerd's `Request`, calls the dispatcher and writes its answer.

The default engine is routerd's own (`http1_server.py`); this one is kept for parity tests and as
a fallback. Streams use a `web.StreamResponse` whose headers wait for the first frame (aiohttp
buffers them when `_send_headers_immediately` is False, the class attribute its own
`web.Response` sets) and are flushed alone one loop turn after the stream was opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress

from aiohttp import web

from routerd.server.http import Dispatch, Reply, Request, StreamSink, body_too_large

_DISPATCH = web.AppKey("dispatch", object)
_STATE = web.AppKey("state", web.Application)
_LIMIT = web.AppKey("limit", int)


class _HeldHeadersResponse(web.StreamResponse):
    _send_headers_immediately = False


class _AiohttpSink:
    """A `StreamSink` over a `web.StreamResponse`, prepared on first use."""

    def __init__(self, request: web.Request, status: int, headers: Mapping[str, str]) -> None:
        self.response = _HeldHeadersResponse(status=status, headers=headers)
        self._request = request
        self._prepared: asyncio.Task[None] | None = None
        self._flush = asyncio.get_running_loop().call_soon(self._flush_headers)

    async def _prepare(self) -> None:
        await self.response.prepare(self._request)

    def _start(self) -> asyncio.Task[None]:
        if self._prepared is None:
            self._prepared = asyncio.ensure_future(self._prepare())
        return self._prepared

    def _flush_headers(self) -> None:
        task = self._start()

        def send(done: asyncio.Task[None]) -> None:
            writer = self.response._payload_writer
            if not done.cancelled() and done.exception() is None and writer is not None:
                with suppress(ConnectionError):  # gone: the next write says so
                    writer.send_headers()

        task.add_done_callback(send)

    async def write(self, data: bytes) -> None:
        self._flush.cancel()
        await self._start()
        await self.response.write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        self._flush.cancel()
        await self._start()
        await self.response.write_eof(data)


def _body(request: web.Request, limit: int) -> tuple[bytes | None, bool]:
    """The body when it came with the head (None otherwise), and whether it is over the limit."""
    content = request.content
    if content.is_eof() and content.exception() is None:
        raw = content.read_nowait()
        return raw, len(raw) > limit
    return None, False


async def _serve(request: web.Request) -> web.StreamResponse:
    limit = request.app[_LIMIT]
    raw, too_large = _body(request, limit)
    sinks: list[_AiohttpSink] = []

    async def read() -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise body_too_large() from None

    def opener(status: int, headers: Mapping[str, str]) -> StreamSink:
        sink = _AiohttpSink(request, status, headers)
        sinks.append(sink)
        return sink

    ours = Request(
        request.method,
        request.path,
        request.query_string,
        request.headers,
        request.app[_STATE],
        None if too_large else raw,
        None if too_large else read,
        opener,
    )
    dispatch: Dispatch = request.app[_DISPATCH]  # type: ignore[assignment]
    answer = await dispatch(ours)
    if type(answer) is Reply:
        if sinks and sinks[-1].response.prepared:  # failed after its stream began: cut it
            if request.transport is not None:
                request.transport.close()
            return sinks[-1].response
        return web.Response(body=answer.body, status=answer.status, headers=answer.headers)
    assert isinstance(answer, _AiohttpSink)
    await answer.write_eof()
    return answer.response


class AiohttpServer:
    """routerd's handlers on aiohttp's server."""

    def __init__(
        self, state: web.Application, dispatch: Dispatch, *, max_body_bytes: int, grace: float
    ) -> None:
        app = web.Application(client_max_size=max_body_bytes)
        app[_DISPATCH] = dispatch
        app[_STATE] = state
        app[_LIMIT] = max_body_bytes
        app.router.add_route("*", "/{tail:.*}", _serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
        self._site: web.TCPSite | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self._runner.cleanup()
