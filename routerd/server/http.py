"""The HTTP seam between routerd's handlers and the server engine that runs them.

Handlers see only these types: a `Request` (method, path, query, headers, the body, route
parameters and the application's state) and answer with a `Reply` (status, headers, bytes) or
with the `StreamSink` they opened on the request and wrote (server-sent events). An engine turns
bytes on a socket into `Request`s, calls one `Dispatch` per request and writes what it answers:
routerd's own HTTP/1.1 server (`server/http1_server.py`, the default) or aiohttp's
(`server/aiohttp_engine.py`, `server: aiohttp` in routerd.yaml).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from routerd.errors import ErrorCode, RouterdError

JSON_HEADERS = {"Content-Type": "application/json"}


class StreamSink(Protocol):
    """An answer sent as it is made (SSE). The engine sends the status and headers given to
    `Request.open_stream` with the first `write`, or alone one loop turn after the stream was
    opened if nothing was written by then (a slow upstream's client still gets them at once).

    `write` raises `ConnectionError` once the client is gone; it waits while the client reads
    slower than the answer is made. `write_eof` sends its bytes and ends the answer.
    """

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None: ...


StreamOpener = Callable[[int, Mapping[str, str]], StreamSink]
BodyReader = Callable[[], Awaitable[bytes]]


class Reply:
    """A whole answer: status, headers and body bytes.

    `after`, when set, is awaited by the engine once the reply was written (or dropped, the
    client being gone), before the connection's next request: the meter step runs there, so
    the client does not wait for the accounting of its answer."""

    __slots__ = ("after", "body", "headers", "status")

    def __init__(
        self, body: bytes = b"", status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers: dict[str, str] = {} if headers is None else headers
        self.after: Callable[[], Awaitable[None]] | None = None


def json_reply(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """`data` as a JSON answer."""
    return Reply(orjson.dumps(data), status, {**JSON_HEADERS, **(headers or {})})


Answer = Reply | StreamSink


def body_too_large() -> RouterdError:
    return RouterdError(
        ErrorCode.payload_too_large, "request body is larger than the configured max_body_bytes"
    )


class Request:
    """One client request as a handler sees it, whichever engine received it.

    `headers` is case-insensitive (a multidict proxy); `read()` gives the whole body, or raises
    the payload_too_large `RouterdError` when it is larger than `max_body_bytes` (the engine
    knows the limit). `match_info` holds the route's path parameters; `app` the application
    whose keys hold the gateway; `request_id` is set by the dispatcher before the handler runs.
    """

    __slots__ = (
        "_body",
        "_opener",
        "_query",
        "_reader",
        "app",
        "headers",
        "match_info",
        "method",
        "path",
        "query_string",
        "request_id",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        app: web.Application,
        body: bytes | None,
        reader: BodyReader | None,
        opener: StreamOpener,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.app = app
        self.match_info: dict[str, str] = {}
        self.request_id = ""
        self._body = body
        self._reader = reader
        self._opener = opener
        self._query: MultiDictProxy[str] | None = None

    async def read(self) -> bytes:
        """The whole body (raises payload_too_large over the limit)."""
        if self._body is None:
            if self._reader is None:
                raise body_too_large()
            self._body = await self._reader()
        return self._body

    @property
    def body_if_read(self) -> bytes | None:
        """The body when it already arrived with the request (no await needed), else None."""
        return self._body

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True)
            self._query = MultiDictProxy(MultiDict(pairs))
        return self._query

    def open_stream(self, status: int, headers: Mapping[str, str]) -> StreamSink:
        """Start a streamed answer; its headers leave with the first write (see StreamSink)."""
        return self._opener(status, headers)


Dispatch = Callable[[Request], Awaitable[Answer]]
