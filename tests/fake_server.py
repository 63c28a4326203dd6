"""The part every fake provider shares: a real aiohttp server on loopback, the requests it
received, and a mode switch. Subclasses add their routes in `app()` and set `prefix`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeServer:
    prefix = ""  # the API's path prefix, part of `base_url`

    def __init__(self, api_key: str, mode: str = "ok") -> None:
        self.api_key = api_key
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.server: TestServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(self.prefix))

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()
        return self.base_url

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None
