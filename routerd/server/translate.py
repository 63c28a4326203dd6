"""Relaying an upstream answer to the client: translated (any-to-any) or passed through.

Translated answers go upstream wire -> canonical -> ingress format, JSON or SSE, incrementally:
each upstream chunk is split into frames, decoded into canonical events and re-encoded at once,
never buffering the whole stream. Passed-through answers keep the upstream's bytes and only read
usage. Usage found on the way is recorded on the request context for metering.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson

from routerd.errors import ErrorCode, RouterdError, anthropic_envelope, openai_envelope
from routerd.formats.canonical import (
    MessageDelta,
    MessageStart,
    StreamError,
    StreamEvent,
    ToolNameMap,
)
from routerd.formats.canonical import Usage as CanonicalUsage
from routerd.formats.codecs import IngressCodec, StreamEncoder, WireCodec
from routerd.formats.sse import encode_frame
from routerd.metering.usage import Usage
from routerd.providers.base import BufferedResponse, UpstreamError, UpstreamResponse
from routerd.server.context import CLIENT_CLOSED, RequestContext
from routerd.server.http import Reply, Request, StreamSink
from routerd.server.pipeline import response_headers
from routerd.server.sse_relay import (
    ChatUsageFilter,
    CheckedFrames,
    FrameData,
    FrameSplitter,
    frame_json,
)

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_METERED = (MessageStart, MessageDelta)  # the stream events that carry usage


def metered(usage: CanonicalUsage) -> Usage:
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def _malformed(what: str) -> UpstreamError:
    return UpstreamError(ErrorCode.provider_unavailable, f"the upstream sent a malformed {what}")


async def _read_json(ctx: RequestContext, response: UpstreamResponse) -> tuple[bytes, Any]:
    """An answer not read inside its attempt (a BufferedResponse is taken as it is)."""
    try:
        payload = await response.read()
    finally:
        response.release()
    ctx.first_byte()
    try:
        return payload, orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _malformed("JSON body") from None


def _json_response(ctx: RequestContext, body: bytes) -> Reply:
    headers = response_headers(ctx)
    headers["Content-Type"] = "application/json"
    return Reply(body, 200, headers)


async def passthrough_json(
    ctx: RequestContext, response: UpstreamResponse, wire: WireCodec
) -> Reply:
    if isinstance(response, BufferedResponse):  # read and parsed inside the attempt
        ctx.first_byte()
        payload, data = response.body, response.data
    else:
        payload, data = await _read_json(ctx, response)
    if not isinstance(data, dict):
        raise _malformed("JSON body")
    ctx.usage = metered(wire.decode_usage(data.get("usage")))
    return _json_response(ctx, payload)


async def translated_json(
    ctx: RequestContext,
    response: UpstreamResponse,
    wire: WireCodec,
    ingress: IngressCodec,
    names: ToolNameMap,
) -> Reply:
    data: Any
    if isinstance(response, BufferedResponse):  # read and parsed inside the attempt
        ctx.first_byte()
        data = response.data
    else:
        _, data = await _read_json(ctx, response)
    try:
        canonical = wire.decode_response(data, names)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise _malformed("JSON body") from None
    ctx.usage = metered(canonical.usage)
    return _json_response(ctx, orjson.dumps(ingress.encode_response(canonical, ctx.model)))


def error_frame(ingress: IngressCodec, err: RouterdError, request_id: str) -> bytes:
    """The event that ends a failed stream in the client's format: `event: error` with
    Anthropic's envelope (Messages), or a `data:` line with `{"error": {...}}` (Chat)."""
    if ingress.name == "anthropic_messages":
        return encode_frame(anthropic_envelope(err, request_id), "error")
    return encode_frame(openai_envelope(err, request_id))


class StreamTranslator:
    """Upstream SSE bytes in, client SSE bytes out; records usage on the context."""

    def __init__(
        self, ctx: RequestContext, wire: WireCodec, encoder: StreamEncoder, names: ToolNameMap
    ) -> None:
        self._ctx = ctx
        self._decoder = wire.stream_decoder(names)
        self._encoder = encoder
        self._splitter = FrameSplitter()

    def _encode(self, events: list[StreamEvent]) -> bytes:
        out = []
        for event in events:
            if type(event) in _METERED:
                usage = getattr(event, "usage", None)
                if isinstance(usage, CanonicalUsage):
                    self._ctx.usage = metered(usage)
            out.append(self._encoder.frames(event))
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        """Each whole frame is decoded, translated and encoded; a frame that is not JSON ends
        the stream (`frame_json` raises) after the frames before it were translated."""
        events: list[StreamEvent] = []
        for frame in self._splitter.frames(chunk):
            data = frame_json(frame)
            if data is not None:
                events += self._decoder.feed(data)
        return self._encode(events)

    def finish(self) -> bytes:
        out = self.feed(last) if (last := self._splitter.finish()) else b""
        return out + self._encode(self._decoder.finish()) + self._encoder.end()

    def fail(self, ingress: IngressCodec, err: RouterdError, request_id: str) -> bytes:
        """Responses clients get `response.failed` from the encoder (it carries the response id
        and the next sequence number); the other formats their error event."""
        if ingress.name != "openai_responses":
            return error_frame(ingress, err, request_id)
        return self._encoder.frames(StreamError(type="api_error", message=err.message))


class UsageScanner:
    """Passthrough: reads usage from the frames that carry it, leaves the bytes alone."""

    def __init__(self, ctx: RequestContext, wire: WireCodec) -> None:
        self._ctx = ctx
        self._wire = wire
        self._frames = CheckedFrames()
        self._usage = CanonicalUsage()

    def feed(self, chunk: bytes) -> bytes:
        # whole, checked events only: a cut-off or malformed one never reaches the client
        return self._frames.relay(chunk, b'"usage"', self._record)

    def _record(self, data: FrameData) -> bool:
        """Keep the usage a frame carries; every frame is relayed."""
        if data is not None:
            raw = data.get("usage") or (data.get("message") or {}).get("usage")
            if raw:
                self._usage = self._merge(raw)
                self._ctx.usage = metered(self._usage)
        return True

    def _merge(self, raw: dict[str, Any]) -> CanonicalUsage:
        fresh = self._wire.decode_usage(raw)
        if "input_tokens" not in raw and "prompt_tokens" not in raw:
            return CanonicalUsage(
                input_tokens=self._usage.input_tokens,
                output_tokens=fresh.output_tokens,
                cached_tokens=self._usage.cached_tokens,
                cache_write_tokens=self._usage.cache_write_tokens,
                reasoning_tokens=fresh.reasoning_tokens,
            )
        return fresh

    def finish(self) -> bytes:
        frames = self._frames.finish()
        return b"".join(
            frame for frame, data in frames if b'"usage"' not in frame or self._record(data)
        )


async def relay_stream(
    request: Request,
    ctx: RequestContext,
    upstream: UpstreamResponse,
    ingress: IngressCodec,
    translator: StreamTranslator | UsageScanner | ChatUsageFilter,
) -> StreamSink:
    sink = request.open_stream(200, {**_SSE_HEADERS, **response_headers(ctx)})
    delivered = False
    try:
        feed, write = translator.feed, sink.write
        try:
            async with aclosing(upstream.iter_chunks()) as chunks:
                async for chunk in chunks:
                    ctx.first_byte()
                    out = feed(chunk)
                    if out:
                        ctx.frames_sent += out.count(b"\n\n")
                        await write(out)
            end = translator.finish()
            delivered = not end  # else it is delivered with the end of the body, in one write
        except RouterdError as err:
            ctx.fail(err)
            if isinstance(translator, StreamTranslator):
                end = translator.fail(ingress, err, ctx.request_id)
            else:
                end = error_frame(ingress, err, ctx.request_id)
        await sink.write_eof(end)
    except ConnectionError:
        # a client that hangs up right after the final event (Codex does) got a whole answer
        if not delivered:
            ctx.status = CLIENT_CLOSED
    finally:
        upstream.release()
    return sink
