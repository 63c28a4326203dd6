"""Relay an upstream OpenAI-format SSE stream to the client, frame by frame, without re-encoding.

Frames pass through as raw bytes; only a frame that mentions `"usage"` is decoded, to take the
usage (and to drop the usage-only chunk when routerd asked for it on the client's behalf). An
upstream failure after the first byte ends the stream with an error frame in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from aiohttp import web

from routerd.errors import RouterdError, openai_envelope
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamResponse
from routerd.server.context import RequestContext

CLIENT_CLOSED = 499
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


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

    def rest(self) -> bytes:
        return self._buffer


def _scan_usage(frame: bytes, ctx: RequestContext, keep_usage_chunk: bool) -> bool:
    """Record usage found in the frame; return False when the frame must be dropped."""
    if b'"usage"' not in frame or not frame.startswith(b"data:"):
        return True
    try:
        data = orjson.loads(frame[5:])
    except orjson.JSONDecodeError:
        return True
    usage = data.get("usage") if isinstance(data, dict) else None
    if not usage:
        return True
    ctx.usage = Usage.from_openai(usage)
    if keep_usage_chunk:
        return True
    return bool(data.get("choices"))


async def relay_openai_stream(
    request: web.Request,
    ctx: RequestContext,
    upstream: UpstreamResponse,
    headers: dict[str, str],
    client_wants_usage: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
    splitter = FrameSplitter()
    try:
        await response.prepare(request)
        try:
            async for chunk in upstream.iter_chunks():
                ctx.first_byte()
                out = [f for f in splitter.feed(chunk) if _scan_usage(f, ctx, client_wants_usage)]
                if out:
                    await response.write(b"".join(out))
        except RouterdError as err:
            ctx.fail(err)
            frame = b"data: " + orjson.dumps(openai_envelope(err, ctx.request_id)) + b"\n\n"
            await response.write(frame)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        ctx.status = CLIENT_CLOSED
    finally:
        upstream.release()
    return response
