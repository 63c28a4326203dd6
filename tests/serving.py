"""routerd's whole server (routes, dispatcher, engine, lifecycle) on a free loopback port.

A stand-in for aiohttp's `TestServer` in the fixtures: `start_server`, `make_url`, `close`. The
engine is the gateway's configured one (`server:` in routerd.yaml); `ROUTERD_TEST_SERVER`
(http1 | aiohttp) overrides it, so `make test` runs the server tests on both engines.
"""

from __future__ import annotations

import os
from typing import cast

from yarl import URL

from routerd.config.model import ServerKind
from routerd.server.app import RunningGateway
from routerd.server.gateway import Gateway


class RouterdServer:
    def __init__(self, gateway: Gateway) -> None:
        engine = cast("ServerKind | None", os.environ.get("ROUTERD_TEST_SERVER") or None)
        self.gateway = gateway
        self._running = RunningGateway(gateway, engine)
        self.port = 0

    async def start_server(self) -> None:
        await self._running.start("127.0.0.1", 0)
        self.port = self._running.port

    def make_url(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}{path}")

    async def close(self) -> None:
        await self._running.close()
