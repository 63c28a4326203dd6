"""`Http1Transport`: routerd's own lean HTTP/1.1 client for upstream calls (the default).

Same `Transport` contract and semantics as `AiohttpTransport`, at a fraction of its CPU per
request: one keep-alive `Pool` per origin (at most `pool_size` connections, FIFO waiters),
`http://` and `https://` (TLS from `ssl.create_default_context()`, SNI = host; a private CA is
trusted through `SSL_CERT_FILE`), responses parsed by httptools (see `http1_conn`).

- The request is written with one `transport.write`: request line, Host, Content-Length,
  Accept-Encoding (`gzip, deflate`, like aiohttp; gzip/deflate bodies are decoded), the
  request's headers (a header or URL with a line break is refused, never sent), the body. The
  request line per URL and an adapter's fixed headers (`http1_wire`) are encoded only once.
- Timeouts: `connect` (TCP + TLS of a new connection), `first_byte` (until the response
  headers, pool wait and connect included), `idle` (the longest gap between two body chunks
  while routerd waits for one: `IdleWatch`, one timer per idle period) and `total` (the whole
  exchange). The header and total limits are plain loop timers, not `asyncio.timeout` scopes;
  the header limit is one timer per connection, re-armed, not one per request.
- The provider's `max_concurrency` slots are the shared `ConcurrencyLimit`.
- `release()` gives the connection back to the pool only when the whole body arrived and the
  server allows keep-alive; otherwise the connection is closed.
- Keep-alive race: when a pooled connection turns out to be closed by the server (it was idle
  and the server dropped it as we wrote) and no byte of a response arrived, the request is
  sent again ONCE on a fresh connection, as browsers and aiohttp do.
- `upstream_error` is the one place foreign failures become `UpstreamError`s, with the same
  codes and messages as `map_client_exception`.

Not supported (use `transport: aiohttp`): HTTP proxies, HTTP/2, request bodies streamed in parts.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from urllib.parse import urlsplit

from routerd.config.model import ProviderConfig
from routerd.errors import ErrorCode
from routerd.providers.base import (
    ConcurrencyLimit,
    IdleWatch,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    upstream_closed,
    upstream_failed,
    upstream_timeout,
    upstream_unreachable,
)
from routerd.providers.http1_conn import (
    ConnectFailed,
    Connection,
    ConnectionClosed,
    Http1Error,
    MalformedResponse,
)
from routerd.providers.http1_pool import Pool
from routerd.providers.http1_wire import header_block

_FAILURES = (Http1Error, OSError, TimeoutError)
_MAX_TARGETS = 1024  # cached request lines (one per upstream URL of the catalog)


def upstream_error(exc: BaseException, *, idle: bool = False) -> UpstreamError:
    """The one mapping from http1's failures (timeouts, connect and TLS errors, resets, EOF
    before the end of the body, malformed responses) to the taxonomy."""
    if isinstance(exc, TimeoutError):
        return upstream_timeout(idle)
    if isinstance(exc, ConnectFailed):
        return upstream_unreachable()
    if isinstance(exc, ConnectionClosed | ConnectionError):
        return upstream_closed()
    return upstream_failed(exc)


class RawHeaders(Mapping[str, str]):
    """Response headers as received: case-insensitive lookup, first value wins; nothing is
    decoded until someone asks (most answers are only ever asked for their body)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> str:
        wanted = key.lower().encode("latin-1", "replace")
        for name, value in self._raw:
            if name.lower() == wanted:
                return value.decode("latin-1")
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.decode("latin-1") for name, _ in self._raw))

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._raw})


def _decoder(encoding: bytes | None) -> zlib._Decompress | None:
    """A decompressor for a gzip or deflate body (even when we did not ask for it)."""
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    return None


def _inflate(decoder: zlib._Decompress, data: bytes, last: bool = False) -> bytes:
    try:
        return decoder.flush() if last else decoder.decompress(data)
    except zlib.error as exc:
        raise MalformedResponse(f"undecodable body: {exc}") from None


class Http1Response:
    """One upstream answer whose body is read from its pooled connection."""

    __slots__ = ("_conn", "_decoder", "_give_back", "_idle", "_pool", "_total", "headers", "status")

    def __init__(
        self,
        conn: Connection,
        pool: Pool,
        give_back: Callable[[], None] | None,
        idle: float | None,
        total: asyncio.TimerHandle | None,
    ) -> None:
        self.status = conn.status
        self.headers: Mapping[str, str] = RawHeaders(conn.raw_headers)
        self._conn: Connection | None = conn
        self._pool = pool
        self._give_back = give_back
        self._idle = idle
        self._total = total
        self._decoder = _decoder(conn.encoding) if conn.encoding is not None else None

    async def read(self) -> bytes:
        """The whole body, under the same idle limit between chunks as a stream."""
        conn = self._conn
        if conn is not None and conn.done and self._decoder is None:
            body = conn.take()  # all of it arrived with the headers: nothing to wait for
            self._recycle()
            return body
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """Body bytes as they arrive; the connection goes back to the pool at the end."""
        conn = self._conn
        if conn is None:
            return
        watch = IdleWatch(conn, self._idle) if self._idle and not conn.done else None
        clock = self._pool.loop.time  # the watch's clock, without a call layer
        decoder = self._decoder
        try:
            while True:
                data = conn.take()
                if data:
                    if decoder is not None:
                        data = _inflate(decoder, data)
                    if data:
                        yield data
                    continue
                if conn.done:
                    break
                if conn.exc is not None:
                    raise conn.exc
                waiter = conn.wait_body()
                if watch is not None:
                    watch.waiting_since = clock()
                await waiter
                if watch is not None:
                    watch.waiting_since = None
            if decoder is not None and (tail := _inflate(decoder, b"", last=True)):
                yield tail
        except _FAILURES as exc:
            self._recycle()
            raise upstream_error(exc, idle=True) from None
        finally:
            if watch is not None:
                watch.stop()
        self._recycle()

    def release(self) -> None:
        self._recycle()
        give_back = self._give_back
        if give_back is not None:
            self._give_back = None
            give_back()

    def _recycle(self) -> None:
        """The exchange is over: keep the connection for the next request or close it."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self._total is not None:
            self._total.cancel()
        self._pool.release(conn, conn.finish())


class _Target:
    """What one upstream URL needs on the request path: its pool and request-line tail
    (encoded, and whole with the method for POST, which is every request routerd sends)."""

    __slots__ = ("head", "pool", "post")

    def __init__(self, pool: Pool, head: str) -> None:
        self.pool = pool
        self.head = head.encode()
        self.post = b"POST" + self.head


def _refused(what: str) -> UpstreamError:
    return UpstreamError(ErrorCode.invalid_request, f"{what} for the upstream has a line break")


class Http1Transport:
    """HTTP/1.1 to one provider over keep-alive pools, created lazily inside the loop."""

    def __init__(self, config: ProviderConfig) -> None:
        self._pool_size = config.pool_size
        self._limit = ConcurrencyLimit(config)
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None

    @property
    def in_use(self) -> int:
        """Connections handed out and not given back (for tests and diagnostics: leaks)."""
        return sum(pool.in_use for pool in self._pools.values())

    @property
    def idle(self) -> int:
        """Open connections waiting in the pools for the next request."""
        return sum(pool.idle for pool in self._pools.values())

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        give_back = await self._limit.acquire() if self._limit.active else None
        try:
            target = self._targets.get(request.url) or self._target(request.url)
            payload = _payload(request, target)
            t = request.timeouts
            pool = target.pool
            loop = pool.loop
            start = loop.time()
            total_at = start + t.total if t.total else None
            headers_at = start + t.first_byte if t.first_byte else None
            if total_at is not None and (headers_at is None or total_at < headers_at):
                headers_at = total_at
            try:
                conn = await self._answered(pool, payload, headers_at, t.connect, loop)
            except _FAILURES as exc:
                raise upstream_error(exc) from None
            total = None
            if total_at is not None and not conn.done:
                total = loop.call_at(total_at, conn.fail_timeout)
            return Http1Response(conn, pool, give_back, t.idle, total)
        except BaseException:
            if give_back is not None:
                give_back()
            raise

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    async def _answered(
        self,
        pool: Pool,
        payload: bytes,
        headers_at: float | None,
        connect: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> Connection:
        """A connection whose response headers arrived (retrying a stale one once)."""
        conn = pool.take_idle(loop.time())
        if conn is None:
            async with asyncio.timeout_at(headers_at):
                conn = await pool.acquire(connect)
        retried = False
        while True:
            waiter = conn.begin(payload, headers_at)
            try:
                await waiter
            except BaseException:
                conn.finish()
                pool.release(conn, False)
                raise
            if conn.headers_done:
                return conn
            exc = conn.exc or ConnectionClosed(conn.got_bytes)
            conn.finish()
            stale = isinstance(exc, ConnectionClosed) and not exc.got_bytes and conn.reused
            if not stale or retried:
                pool.release(conn, False)
                raise exc
            retried = True
            async with asyncio.timeout_at(headers_at):
                conn = await pool.replace(conn, connect)

    def _target(self, url: str) -> _Target:
        """Parse an upstream URL once: its origin's pool and the request-line tail."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if any(c in path or c in host for c in " \r\n\t"):
            raise _refused("the URL")
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            shown = f"{shown}:{port}"
        pool = self._pools.get((scheme, host, port))
        if pool is None:
            tls = self._tls_context() if scheme == "https" else None
            pool = self._pools[(scheme, host, port)] = Pool(host, port, tls, self._pool_size)
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        target = self._targets[url] = _Target(pool, f" {path} HTTP/1.1\r\nHost: {shown}\r\n")
        return target

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _payload(request: UpstreamRequest, target: _Target) -> bytes:
    """The whole request in one buffer; a header with a line break is refused, never sent."""
    block = request.wire_headers
    if block is None:  # headers the adapter did not encode at load (forwarded client headers)
        block = header_block(request.headers)
        if block is None:
            raise _refused("a header")
    method = request.method
    head = target.post if method == "POST" else method.encode() + target.head
    body = request.body
    return b"".join((head, b"Content-Length: %d\r\n" % len(body), block, body))
