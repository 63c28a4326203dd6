"""The keep-alive pool of one origin (scheme, host, port) for `Http1Transport`.

At most `limit` connections are open (idle or in use); a request that finds none idle and the
pool full waits in FIFO order, and a connection given back goes straight to the first waiter
(or its slot, when the connection could not be kept). Idle connections are reused most recent
first and dropped after `keepalive` seconds (one sweep timer per pool, not one per connection),
as soon as the server closed them, or when the server said `Connection: close`.

A pool is made inside the running loop and keeps it (`loop`): on Python 3.11 every
`asyncio.get_running_loop()` costs a `getpid` system call, and a request asks for the loop's
clock more than once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from routerd.providers.http1_conn import ConnectFailed, Connection

KEEPALIVE = 30.0  # seconds an idle connection is kept


class Pool:
    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        limit: int,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._limit = limit
        self._keepalive = keepalive
        self.loop = asyncio.get_running_loop()
        self._open = 0  # connections open or being opened, idle ones included
        self._idle: list[Connection] = []
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections handed out (or being opened) and not given back yet."""
        return self._open - len(self._idle)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self, connect_timeout: float | None) -> Connection:
        """A connection to use: an idle one, a new one, or the next one given back."""
        loop = self.loop
        conn = self.take_idle(loop.time())
        if conn is not None:
            return conn
        if self._open < self._limit:
            self._open += 1
            return await self._connect(connect_timeout)
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            conn_or_slot = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # handed over while we were being cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        if conn_or_slot is not None and not conn_or_slot.closed:
            return conn_or_slot
        if conn_or_slot is not None:
            conn_or_slot.close()
        return await self._connect(connect_timeout)

    def take_idle(self, now: float) -> Connection | None:
        """The most recently used idle connection still open and fresh, if any."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            self._drop(conn)
        return None

    async def replace(self, conn: Connection, connect_timeout: float | None) -> Connection:
        """Close `conn` and open a fresh connection in its place (its slot is kept)."""
        conn.close()
        return await self._connect(connect_timeout)

    def release(self, conn: Connection, reusable: bool) -> None:
        """Give a connection back: kept for the next request when `reusable`, else closed."""
        if reusable and not self._closed:
            conn.reused = True
            self._pass_on(conn)
        else:
            conn.close()
            self._pass_on(None)

    def close(self) -> None:
        """Close the idle connections; those in use close when they are given back."""
        self._closed = True
        while self._idle:
            self._drop(self._idle.pop())
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None

    async def _connect(self, limit: float | None) -> Connection:
        """Open a connection in an already counted slot; the slot is freed when it fails."""
        loop = self.loop
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except TimeoutError:
            self._pass_on(None)
            raise
        except (OSError, ssl.SSLError) as exc:
            self._pass_on(None)
            raise ConnectFailed(str(exc)) from exc
        except BaseException:
            self._pass_on(None)
            raise
        return conn

    def _pass_on(self, conn: Connection | None) -> None:
        """A connection (or, with None, a free slot) goes to the first waiter, else back to the
        pool: an idle connection, or one slot less in use."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        if self._sweep_handle is None:
            self._schedule_sweep()

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._open -= 1

    def _schedule_sweep(self) -> None:
        self._sweep_handle = self.loop.call_later(self._keepalive / 2, self._sweep)

    def _sweep(self) -> None:
        """Drop the connections idle for longer than `keepalive` or closed by the server."""
        self._sweep_handle = None
        now = self.loop.time()
        keep = []
        for conn in self._idle:
            if conn.closed or now - conn.idle_since >= self._keepalive:
                self._drop(conn)
            else:
                keep.append(conn)
        self._idle = keep
        if keep and not self._closed:
            self._schedule_sweep()
