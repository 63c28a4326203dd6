"""Byte-level SSE helpers for passthrough streams: frame splitting and the chat usage filter.

Passthrough frames keep their bytes; only a frame that mentions `"usage"` is decoded, to take the
usage and to drop the usage-only chunk when routerd asked for it on the client's behalf.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from routerd.errors import ErrorCode
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError
from routerd.server.context import RequestContext


class FrameSplitter:
    """Split a byte stream into SSE frames (blank-line separated, LF or CRLF)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            yield buffer[start : end + 2]
            start = end + 2
        self._buffer = buffer[start:]

    def finish(self) -> bytes:
        """At the end of the body: the last frame when the upstream only left out its closing
        blank line, b"" when nothing is left; raises when the body ended inside an event."""
        rest, self._buffer = self._buffer.strip(), b""
        if not rest:
            return b""
        try:
            if rest.startswith(b"data:") and (
                rest[5:].strip() == b"[DONE]" or isinstance(orjson.loads(rest[5:]), dict)
            ):
                return rest + b"\n\n"
        except orjson.JSONDecodeError:
            pass
        raise UpstreamError(
            ErrorCode.provider_unavailable,
            "the upstream stream was cut off in the middle of an event",
        )


class ChatUsageFilter:
    """OpenAI chat passthrough: record usage; drop the usage chunk the client did not ask for."""

    def __init__(self, ctx: RequestContext, client_wants_usage: bool) -> None:
        self._ctx = ctx
        self._keep_usage_chunk = client_wants_usage
        self._splitter = FrameSplitter()

    def _keep(self, frame: bytes) -> bool:
        if b'"usage"' not in frame or not frame.startswith(b"data:"):
            return True
        try:
            data = orjson.loads(frame[5:])
        except orjson.JSONDecodeError:
            return True
        usage = data.get("usage") if isinstance(data, dict) else None
        if not usage:
            return True
        self._ctx.usage = Usage.from_openai(usage)
        return self._keep_usage_chunk or bool(data.get("choices"))

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(f for f in self._splitter.feed(chunk) if self._keep(f))

    def finish(self) -> bytes:
        last = self._splitter.finish()
        return last if last and self._keep(last) else b""
