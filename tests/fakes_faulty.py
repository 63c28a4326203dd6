"""A misbehaving OpenAI-wire upstream: one real aiohttp server, one behaviour per path prefix.

Each "deployment" of a test is a base URL `{server}/{name}/v1`; `FaultyUpstream.modes[name]`
says how that name answers `POST .../chat/completions` and `.../embeddings`:

    ok               a normal answer (JSON or SSE, as asked)
    500              500 with OpenAI's error envelope
    429              429 with `Retry-After: {retry_after}`
    529              529 overloaded
    400              400 invalid request (the request's own fault)
    401              401 (routerd's upstream key is wrong)
    hang_headers     no response headers until released (or `hang_seconds`)
    hang_mid_stream  SSE headers and two frames, then silence
    reset_mid_stream SSE headers and two frames, then the connection is cut (no chunk end)
    malformed        200 whose JSON body is cut off; for streams a frame that is not JSON
    truncated        SSE frames, then half a `data:` line and a clean end of the body
    slow_stream      a normal stream with `slow_seconds` between frames

`hits[name]` counts requests per name, `bodies` keeps each chat request's (name, JSON body),
`arrived` is set by every request. Shapes come from `tests.fakes` (the openai SDK's types).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes import completion, stream_chunks


def _error(status: int, message: str, type_: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


@dataclass
class FaultyUpstream:
    modes: dict[str, str] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    retry_after: str = "1"
    hang_seconds: float = 5.0
    slow_seconds: float = 0.15
    server: TestServer | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def base_url(self, name: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/{name}/v1"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}/v1/chat/completions", self.chat)
        app.router.add_post("/{name}/v1/embeddings", self.embeddings)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), seconds)

    async def _status(self, mode: str) -> web.StreamResponse | None:
        if mode == "500":
            return _error(500, "The server had an error", "server_error")
        if mode == "429":
            headers = {"Retry-After": self.retry_after}
            return _error(429, "Rate limit reached", "requests", headers)
        if mode == "529":
            return _error(529, "Overloaded", "overloaded_error")
        if mode == "400":
            return _error(400, "Invalid 'temperature'", "invalid_request_error")
        if mode == "401":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        if mode == "hang_headers":
            await self._wait(self.hang_seconds)
        return None

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        body = await request.json()
        failed = await self._status(self.modes.get(name, "ok"))
        if failed is not None:
            return failed
        usage = {"prompt_tokens": 10, "total_tokens": 10}
        data = [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        mode = self.modes.get(name, "ok")
        self.hits[name] += 1
        body = await request.json()
        self.bodies.append((name, body))
        self.arrived.set()
        failed = await self._status(mode)
        if failed is not None:
            return failed
        if body.get("stream"):
            return await self._stream(request, body, mode)
        if mode == "malformed":
            cut = b'{"id": "chatcmpl-x", "choices": ['
            return web.Response(body=cut, content_type="application/json")
        return web.json_response(completion(body["model"]))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], mode: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = [
            b"data: " + json.dumps(f).encode() + b"\n\n"
            for f in stream_chunks(body["model"], include_usage)
        ]
        if mode in ("hang_mid_stream", "reset_mid_stream", "malformed", "truncated"):
            for frame in frames[:2]:
                await response.write(frame)
            if mode == "hang_mid_stream":
                await self._wait(self.hang_seconds)
            elif mode == "reset_mid_stream":
                assert request.transport is not None
                request.transport.close()
                return response
            elif mode == "malformed":
                await response.write(b"data: {not json at all\n\n")
            else:
                await response.write(b'data: {"id": "chatcmpl-fake123", "choi')
            await response.write_eof()
            return response
        for frame in frames:
            await response.write(frame)
            if mode == "slow_stream":
                await self._wait(self.slow_seconds)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
