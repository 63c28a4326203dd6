"""Server-sent events: an incremental parser and the frame encoder.

`SSEParser` follows the WHATWG event-stream rules: feed it bytes as they arrive (any chunking,
`\\n`, `\\r\\n` or `\\r` line ends, a UTF-8 character split across feeds) and it returns each
complete event once its blank line has arrived. Comment lines (`:`) are skipped, multi-line
`data` is joined with `\\n`, one space after the colon is dropped. `encode_frame` builds
`event: X\\ndata: {json}\\n\\n` (or data-only) frames with orjson; `DONE` is the OpenAI terminator.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. `event` is None when the stream gave no `event:` field."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The `data` parsed as JSON."""
        return orjson.loads(self.data)


class SSEParser:
    """Incremental SSE parser: `feed(bytes)` returns the events completed by those bytes."""

    __slots__ = ("_buf", "_data", "_decoder", "_event", "_id", "_retry", "_started")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buf += text
        return self._drain(final=False)

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream. A trailing event without its blank line is discarded, as the
        spec requires; a complete last line is still processed."""
        self._buf += self._decoder.decode(b"", final=True)
        events = self._drain(final=True)
        self._data, self._event = [], None
        return events

    def _drain(self, *, final: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buf = self._buf
        pos = 0
        size = len(buf)
        while pos < size:
            nl = _find_line_end(buf, pos)
            if nl < 0:
                break
            end = nl
            if buf[nl] == "\r":
                if nl + 1 == size and not final:
                    break  # a "\n" may follow in the next chunk
                if nl + 1 < size and buf[nl + 1] == "\n":
                    nl += 1
            event = self._line(buf[pos:end])
            if event is not None:
                events.append(event)
            pos = nl + 1
        self._buf = buf[pos:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], None
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event or None, id=self._id, retry=self._retry)


def _find_line_end(buf: str, pos: int) -> int:
    n = buf.find("\n", pos)
    r = buf.find("\r", pos)
    if r < 0:
        return n
    if n < 0:
        return r
    return min(n, r)


def encode_frame(data: Any, event: str | None = None) -> bytes:
    """One SSE frame. `data` is JSON-encoded unless it is already `bytes` or `str`."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = orjson.dumps(data)
    if b"\n" in payload or b"\r" in payload:
        payload = b"\ndata: ".join(payload.splitlines())
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
