"""The small provider interface: upstream request/response types, transports, and adapters.

A `Transport` sends one `UpstreamRequest` and returns an `UpstreamResponse` (httpx-style: tiny,
swappable). `AiohttpTransport` is one real one (`transport: aiohttp`; the default is
`http1.Http1Transport`), one pooled `ClientSession` per provider (the connector's limit is
`pool_size`), and the one place that maps aiohttp's exceptions to routerd's `UpstreamError`
(built by the `upstream_*` constructors every transport shares). It enforces the timeouts:
`connect`, `first_byte` (until the response headers), `idle` (the longest gap between two body
chunks) and `total` (the whole exchange), and the provider's `max_concurrency`
(`ConcurrencyLimit`, shared): a request waits at most `queue_timeout` for a slot, then fails
fast with provider_overloaded. An `Adapter` differs per
upstream type only in URL, headers, payload mapping and error classification.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import orjson

from routerd.config.model import ProviderConfig, Timeouts
from routerd.errors import ErrorCode, RouterdError
from routerd.providers.http1_wire import header_block


class UpstreamError(RouterdError):
    """A failure of the upstream (or the way to it), already classified into the taxonomy."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        local: bool = False,
    ) -> None:
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else None
        super().__init__(code, message, headers=headers)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.local = local  # routerd's own limit (concurrency cap), not the upstream's failure


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool
    timeouts: Timeouts
    # `headers` encoded once by the adapter (http1 writes them as they are); None: encode them
    wire_headers: bytes | None = None


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncGenerator[bytes, None]: ...

    def release(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class BufferedResponse:
    """A whole upstream answer read before anything went to the client, with its parsed JSON."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    data: object = None

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        yield self.body

    def release(self) -> None:
        pass


class Failable(Protocol):
    """A body being read that a timer can fail (aiohttp's StreamReader, http1's connection)."""

    def set_exception(self, exc: BaseException) -> None: ...


class IdleWatch:
    """The idle limit of one body: one timer per idle period (not one per chunk), which fails
    the pending read with TimeoutError when routerd has waited `idle` seconds for the next chunk.
    Time the client spends consuming a chunk does not count: only the wait in `readany`."""

    __slots__ = ("_content", "_handle", "_idle", "_loop", "waiting_since")

    def __init__(self, content: Failable, idle: float) -> None:
        self._content = content
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None
        self._handle = self._loop.call_at(self._loop.time() + idle, self._check)

    def now(self) -> float:
        return self._loop.time()

    def _check(self) -> None:
        since, now = self.waiting_since, self._loop.time()
        if since is not None and now - since >= self._idle:
            self._content.set_exception(TimeoutError())
            return
        start = since if since is not None else now
        self._handle = self._loop.call_at(start + self._idle, self._check)

    def stop(self) -> None:
        self._handle.cancel()


@dataclass(slots=True)
class _AiohttpResponse:
    response: aiohttp.ClientResponse
    idle: float | None
    on_release: Callable[[], None] | None = None
    status: int = field(init=False)
    headers: Mapping[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.status = self.response.status
        self.headers = self.response.headers

    async def read(self) -> bytes:
        """The whole body, under the same idle limit between chunks as a stream."""
        content = self.response.content
        if content.is_eof() and content.exception() is None:
            return content.read_nowait()  # all of it arrived with the headers: nothing to wait
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        content = self.response.content
        watch = IdleWatch(content, self.idle) if self.idle else None
        try:
            while True:
                if watch is not None:
                    watch.waiting_since = watch.now()
                chunk = await content.readany()
                if watch is not None:
                    watch.waiting_since = None
                if not chunk:
                    return
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_exception(exc, idle=True) from None
        finally:
            if watch is not None:
                watch.stop()

    def release(self) -> None:
        self.response.release()
        if self.on_release is not None:
            on_release, self.on_release = self.on_release, None
            on_release()


def map_client_exception(exc: BaseException, *, idle: bool = False) -> UpstreamError:
    """The one mapping from aiohttp / timeout exceptions to the taxonomy."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return upstream_timeout(idle)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return upstream_unreachable()
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return upstream_closed()
    return upstream_failed(exc)


# The transport failures of the taxonomy, shared by every transport (same codes and messages).
def upstream_timeout(idle: bool) -> UpstreamError:
    what = "stopped sending (idle or total timeout)" if idle else "did not answer in time"
    return UpstreamError(ErrorCode.provider_timeout, f"the upstream {what}")


def upstream_unreachable() -> UpstreamError:
    return UpstreamError(ErrorCode.provider_unavailable, "cannot connect to the upstream")


def upstream_closed() -> UpstreamError:
    return UpstreamError(ErrorCode.provider_unavailable, "the upstream closed the connection")


def upstream_failed(exc: BaseException) -> UpstreamError:
    return UpstreamError(ErrorCode.provider_unavailable, f"upstream error: {type(exc).__name__}")


class ConcurrencyLimit:
    """A provider's `max_concurrency`, shared by every transport: a request waits at most
    `queue_timeout` for a slot, then fails fast with provider_overloaded."""

    __slots__ = ("_name", "_queue_timeout", "_slots", "active")

    def __init__(self, config: ProviderConfig) -> None:
        self._name = config.name
        self._queue_timeout = config.queue_timeout
        self._slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
        self.active = self._slots is not None

    async def acquire(self) -> Callable[[], None] | None:
        """Wait for a concurrency slot (at most `queue_timeout`); the callback gives it back."""
        slots = self._slots
        if slots is None:
            return None
        try:
            if slots.locked() and self._queue_timeout <= 0:
                raise TimeoutError
            async with asyncio.timeout(self._queue_timeout or None):
                await slots.acquire()
        except TimeoutError:
            raise UpstreamError(
                ErrorCode.provider_overloaded,
                f"routerd's concurrency limit for provider {self._name!r} is reached",
                local=True,
            ) from None
        return slots.release


class AiohttpTransport:
    """HTTP to one provider over one pooled ClientSession, created lazily inside the loop."""

    def __init__(self, config: ProviderConfig) -> None:
        self._pool_size = config.pool_size
        self._session: aiohttp.ClientSession | None = None
        self._limit = ConcurrencyLimit(config)

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        """The pool (for tests and diagnostics: which connections are in use)."""
        return self._session.connector if self._session is not None else None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        t = request.timeouts
        # idle is enforced per body chunk by _AiohttpResponse, not as aiohttp's sock_read, which
        # would also cut a slow (non-streamed) answer before its headers
        timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect)
        give_back = await self._limit.acquire()
        try:
            async with asyncio.timeout(t.first_byte):
                response = await self._client().request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    timeout=timeout,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            if give_back is not None:
                give_back()
            raise map_client_exception(exc) from None
        except BaseException:
            if give_back is not None:
                give_back()
            raise
        return _AiohttpResponse(response, t.idle, give_back)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Adapter(Protocol):
    """Per upstream type: how to address it and how to read its errors."""

    wire_format: str

    def build_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        stream: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest: ...

    def build_embeddings_request(
        self, upstream_model: str, body: dict[str, object]
    ) -> UpstreamRequest | None: ...

    def build_count_tokens_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest | None: ...

    def classify_error(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> UpstreamError: ...


class JsonAdapter:
    """The shared shape of an adapter: POST a JSON body to one URL with fixed headers.

    Subclasses only say which URL and headers (and may refine `classify_error`)."""

    wire_format = ""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeouts: Timeouts,
        embeddings_url: str | None = None,
        count_tokens_url: str | None = None,
    ) -> None:
        self._url = url
        self._headers = headers
        self._wire_headers = header_block(headers)  # the fixed headers, encoded at load
        self._timeouts = timeouts
        self._embeddings_url = embeddings_url
        self._count_tokens_url = count_tokens_url

    def build_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        stream: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest:
        body["model"] = upstream_model
        if client_headers:
            headers = {**client_headers, **self._headers}
            payload = orjson.dumps(body)
            return UpstreamRequest("POST", self._url, headers, payload, stream, self._timeouts)
        return UpstreamRequest(
            "POST",
            self._url,
            self._headers,
            orjson.dumps(body),
            stream,
            self._timeouts,
            self._wire_headers,
        )

    def build_embeddings_request(
        self, upstream_model: str, body: dict[str, object]
    ) -> UpstreamRequest | None:
        """The embeddings call (OpenAI wire format), or None when this upstream has none."""
        if self._embeddings_url is None:
            return None
        body["model"] = upstream_model
        return UpstreamRequest(
            "POST",
            self._embeddings_url,
            self._headers,
            orjson.dumps(body),
            False,
            self._timeouts,
            self._wire_headers,
        )

    def build_count_tokens_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest | None:
        """The upstream's own token count, or None when it has no such endpoint."""
        if self._count_tokens_url is None:
            return None
        body["model"] = upstream_model
        headers = {**client_headers, **self._headers} if client_headers else self._headers
        payload = orjson.dumps(body)
        return UpstreamRequest(
            "POST", self._count_tokens_url, headers, payload, False, self._timeouts
        )

    def classify_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return classify_status(status, body, headers)


def upstream_message(body: bytes) -> str:
    """The upstream's own error message, when its body is a JSON error envelope."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return ""


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def classify_status(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """Status-based classification shared by every adapter; adapters refine it."""
    detail = upstream_message(body)
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        code, msg = (
            ErrorCode.provider_auth,
            f"the upstream rejected routerd's credentials ({status})",
        )
    elif status == 429:
        code, msg = ErrorCode.provider_rate_limit, f"the upstream is rate limiting{suffix}"
    elif status == 529:
        code, msg = ErrorCode.provider_overloaded, f"the upstream is overloaded{suffix}"
    elif status == 408 or status == 504:
        code, msg = ErrorCode.provider_timeout, f"the upstream timed out ({status})"
    elif status >= 500 or status == 404:
        code, msg = ErrorCode.provider_unavailable, f"the upstream failed ({status}){suffix}"
    elif status == 413:
        code, msg = ErrorCode.payload_too_large, f"the upstream refused the request size{suffix}"
    else:
        lowered = detail.lower()
        if "prompt is too long" in lowered or (
            "context" in lowered and ("length" in lowered or "window" in lowered)
        ):
            code = ErrorCode.context_length_exceeded
        else:
            code = ErrorCode.invalid_request
        msg = f"the upstream rejected the request ({status}){suffix}"
    return UpstreamError(
        code, msg, upstream_status=status, retry_after=retry_after_seconds(headers)
    )
