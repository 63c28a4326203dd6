"""routerd's own HTTP/1.1 server engine: the listening socket and the server's lifecycle.

`Http1Server` turns bytes on accepted sockets into the seam's `Request`s (`server/http.py`),
calls one `Dispatch` per request and writes what it answers; each socket is an
`Http1ServerConnection` (`http1_server_conn.py`: parsing with httptools, keep-alive,
pipelining, body and head limits; `http1_server_answer.py`: replies, streams, the idle timer).
This module owns what is shared by every connection (the settings, the `Date` cache, the open
connections and the running answer tasks) and `close(grace)`: stop accepting, close idle
connections, let answers in flight finish for up to `grace` seconds, then close the rest and
cancel and await the tasks still running.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from routerd.server.http import Dispatch
from routerd.server.http1_server_answer import Answering
from routerd.server.http1_server_conn import Http1ServerConnection
from routerd.server.http1_server_wire import DateCache


class Http1Server:
    """An HTTP/1.1 server for one `Dispatch` (the engine behind routerd's handlers)."""

    def __init__(
        self,
        app: web.Application,
        dispatch: Dispatch,
        *,
        max_body_bytes: int,
        keepalive_timeout: float = 75.0,
        max_head_bytes: int = 65536,
        grace: float = 10.0,
    ) -> None:
        self.app = app
        self.dispatch = dispatch
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self.max_head_bytes = max_head_bytes
        self.grace = grace  # close()'s default
        self.date = DateCache()
        self.conns: set[Answering] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.loop: asyncio.AbstractEventLoop
        self._server: asyncio.Server | None = None
        self.port = 0  # the bound port, once started (the first socket's, if the host has several)
        self._settled: asyncio.Future[None] | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0: any free port, see `port`)."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            self._connection, host, port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _connection(self) -> Http1ServerConnection:
        return Http1ServerConnection(self)

    def connection_done(self, conn: Answering) -> None:
        self.conns.discard(conn)
        self._settle()

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._settle()

    def _settle(self) -> None:
        settled = self._settled
        if settled is not None and not settled.done() and not self.conns and not self.tasks:
            settled.set_result(None)

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting, close idle connections at once, let the answers in flight finish
        (each with `Connection: close`) for up to `grace` seconds (default: the constructor's),
        then close what is left and cancel (and await) the handler tasks still running."""
        grace = self.grace if grace is None else grace
        self.closing = True
        server = self._server
        if server is not None:
            server.close()
        for conn in list(self.conns):
            conn.shutdown()
        if self.conns or self.tasks:
            settled = self._settled = self.loop.create_future()
            self._settle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(settled, grace)
        for conn in list(self.conns):
            conn.abort()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
