"""The bytes routerd's HTTP/1.1 server reads and writes, apart from the connection's state.

It owns the status lines (precomputed per status, reasons from `http.HTTPStatus`), the reply
head (the handler's headers, refused when a name or value holds a line break, then the framing
lines the server adds), chunk framing, the canned JSON answers the server itself gives (400
malformed, 431 head too large, 500 internal error: OpenAI's envelope), the per-second `Date`
cache, and the split of a request target into its percent-decoded path and raw query.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from types import MappingProxyType
from urllib.parse import unquote

import httptools
import orjson

from routerd.errors import ErrorCode, RouterdError, openai_envelope

STATUS_LINES: Mapping[int, str] = MappingProxyType(
    {code: f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n" for code in HTTPStatus}
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CLOSE = "Connection: close\r\n"
KEEP_ALIVE = "Connection: keep-alive\r\n"  # an HTTP/1.0 client kept alive is told so
CHUNKED = "Transfer-Encoding: chunked\r\n"


def _error_body(message: str) -> bytes:
    code = ErrorCode.internal_error if message == "internal error" else ErrorCode.invalid_request
    return orjson.dumps(openai_envelope(RouterdError(code, message), request_id=""))


MALFORMED = _error_body("malformed HTTP request")
HEAD_TOO_LARGE = _error_body("request line and headers are too large")
INTERNAL = _error_body("internal error")


def status_line(status: int) -> str:
    line = STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n"


def reply_head(status: int, headers: Mapping[str, str], framing: str) -> bytes | None:
    """Status line, the handler's headers and the server's `framing` lines (which end with the
    blank line); None when a header holds CR or LF (it must never reach the wire) or cannot be
    encoded."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if lines.count("\n") != count or lines.count("\r") != count:
        return None
    try:
        return f"{status_line(status)}{lines}{framing}".encode()
    except UnicodeEncodeError:
        return None


def no_body(status: int) -> bool:
    """1xx, 204 and 304 answers carry neither a body nor Content-Length."""
    return status < 200 or status == 204 or status == 304


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def canned(status: int, body: bytes, date: str) -> bytes:
    """One of the server's own JSON answers, closing the connection."""
    framing = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return f"{status_line(status)}{framing}Date: {date}\r\n{CLOSE}\r\n".encode() + body


def split_target(target: bytes) -> tuple[str, str]:
    """(percent-decoded path, raw query) of a request target; absolute-form targets
    (`http://host/path`) keep only their path. Raises `HttpParserInvalidURLError`."""
    if target[:1] == b"/":
        raw_path, _, raw_query = target.partition(b"?")
        if b"#" in target:
            raw_path = raw_path.partition(b"#")[0]
            raw_query = raw_query.partition(b"#")[0]
    else:
        parsed = httptools.parse_url(target)
        raw_path = parsed.path or b"/"
        raw_query = parsed.query or b""
    path = raw_path.decode("utf-8", "surrogateescape")
    if "%" in path:
        path = unquote(path, errors="surrogateescape")
    return path, raw_query.decode("utf-8", "surrogateescape")


class DateCache:
    """The `Date` header's text, formatted at most once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True)
        return self._text


def without_upgrade(
    method: bytes, target: bytes, version: str, raw: list[tuple[bytes, bytes]]
) -> bytes:
    """The head of an `Upgrade` request rewritten without the `upgrade` token of its
    Connection headers, so that it parses as a plain HTTP/1.1 request (the Upgrade header
    itself stays for the handler to see)."""
    lines = [method, b" ", target, b" HTTP/", version.encode(), b"\r\n"]
    for name, value in raw:
        if name.lower() == b"connection":
            tokens = [t for t in value.split(b",") if t.strip().lower() != b"upgrade"]
            if not tokens:
                continue
            value = b",".join(tokens)
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)
