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


class AiohttpServer:
    """routerd's handlers on aiohttp's server."""

    def __init__(
        self, state: web.Application, dispatch: Dispatch, *, max_body_bytes: int, grace: float
    ) -> None:
        self._state = state
        self._dispatch = dispatch
        self._limit = max_body_bytes
        app = web.Application(client_max_size=max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._serve)
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

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        """The one aiohttp route: the request as routerd's, the answer back as aiohttp's."""
        raw, too_large = _body(request, self._limit)
        sinks: list[_AiohttpSink] = []

        async def read() -> bytes:
            try:
                return await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise body_too_large() from None

        def opener(status: int, headers: Mapping[str, str]) -> StreamSink:
            sinks.append(_AiohttpSink(request, status, headers))
            return sinks[-1]

        body, reader = (None, None) if too_large else (raw, read)
        ours = Request(
            request.method, request.path, request.query_string, request.headers, self._state,
            body, reader, opener,
        )  # fmt: skip
        answer = await self._dispatch(ours)
        if type(answer) is Reply:
            if sinks and sinks[-1].response.prepared:  # failed after its stream began: cut it
                if request.transport is not None:
                    request.transport.close()
                return sinks[-1].response
            response = web.Response(body=answer.body, status=answer.status, headers=answer.headers)
            if answer.after is not None:  # written here, so that `after` runs once it is out
                try:
                    with suppress(ConnectionError):  # the client is gone: metered all the same
                        await response.prepare(request)
                        await response.write_eof()
                finally:
                    await answer.after()
            return response
        assert isinstance(answer, _AiohttpSink)
        await answer.write_eof()
        return answer.response
