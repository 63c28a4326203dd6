"""`POST /v1/messages`: the Anthropic Messages ingress, translated to the upstream's wire format.

Steps: authenticate -> decode the body into the canonical request -> admit the model (clamping
`max_tokens` to the catalog's `max_output_tokens`) -> encode for the upstream's wire format ->
try candidate deployments -> decode the answer into canonical form -> encode it as an Anthropic
message (JSON) or the exact Anthropic event sequence (SSE, frame by frame) -> meter.
Fields that only tune behaviour and have no equivalent upstream are dropped and counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from aiohttp import web

from routerd.errors import ErrorCode, RouterdError, anthropic_envelope
from routerd.formats import anthropic_messages, openai_chat
from routerd.formats.anthropic_stream import MessagesEventEncoder
from routerd.formats.canonical import CanonicalRequest, ToolNameMap, TranslationError
from routerd.formats.canonical import Usage as CanonicalUsage
from routerd.formats.openai_chat_stream import ChatChunkDecoder
from routerd.formats.sse import encode_frame
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, finish
from routerd.server.middleware import REQUEST_ID
from routerd.server.pipeline import GATEWAY, first_answer, read_json_body, response_headers
from routerd.server.sse_relay import CLIENT_CLOSED, FrameSplitter
from routerd.table import ModelRoute

INGRESS = "messages"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _metered(usage: CanonicalUsage) -> Usage:
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def _decode(body: dict[str, Any]) -> CanonicalRequest:
    try:
        return anthropic_messages.decode_request(body)
    except TranslationError as exc:
        raise RouterdError(ErrorCode.invalid_request, str(exc), param=exc.field) from None


def _clamp(req: CanonicalRequest, route: ModelRoute) -> CanonicalRequest:
    cap = route.config.max_output_tokens
    wanted = req.sampling.max_tokens
    if cap is None or wanted is None or wanted <= cap:
        return req
    return dataclasses.replace(req, sampling=dataclasses.replace(req.sampling, max_tokens=cap))


def _upstream_body(req: CanonicalRequest, names: ToolNameMap) -> tuple[dict[str, Any], list[str]]:
    try:
        return openai_chat.encode_request(req, names=names)
    except TranslationError as exc:
        raise RouterdError(ErrorCode.invalid_request, str(exc), param=exc.field) from None


async def _complete(
    ctx: RequestContext, response: UpstreamResponse, names: ToolNameMap
) -> web.Response:
    try:
        payload = await response.read()
    finally:
        response.release()
    ctx.first_byte()
    try:
        canonical = openai_chat.decode_response(orjson.loads(payload), names)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        raise UpstreamError(
            ErrorCode.provider_unavailable, "the upstream sent a malformed JSON body"
        ) from None
    ctx.usage = _metered(canonical.usage)
    body = anthropic_messages.encode_response(canonical, ctx.model)
    return web.Response(
        body=orjson.dumps(body), content_type="application/json", headers=response_headers(ctx)
    )


def _chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for frame in frames:
        if not frame.startswith(b"data:"):
            continue
        data = frame[5:].strip()
        if data == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                ErrorCode.provider_unavailable, "the upstream sent a malformed stream frame"
            ) from None
        if isinstance(chunk, dict):
            out.append(chunk)
    return out


class _StreamTranslator:
    """OpenAI chunks in, Anthropic SSE frames out; records usage on the context."""

    def __init__(self, ctx: RequestContext, names: ToolNameMap) -> None:
        self._ctx = ctx
        self._decoder = ChatChunkDecoder(names)
        self._encoder = MessagesEventEncoder(ctx.model)
        self._splitter = FrameSplitter()

    def _encode(self, events: list[Any]) -> bytes:
        frames: list[bytes] = []
        for event in events:
            usage = getattr(event, "usage", None)
            if isinstance(usage, CanonicalUsage):
                self._ctx.usage = _metered(usage)
            frames.extend(encode_frame(data, name) for name, data in self._encoder.encode(event))
        return b"".join(frames)

    def feed(self, chunk: bytes) -> bytes:
        events = []
        for item in _chunks(list(self._splitter.feed(chunk))):
            events.extend(self._decoder.feed(item))
        return self._encode(events)

    def finish(self) -> bytes:
        return self._encode(self._decoder.finish())


async def _stream(
    request: web.Request, ctx: RequestContext, upstream: UpstreamResponse, names: ToolNameMap
) -> web.StreamResponse:
    response = web.StreamResponse(headers={**_SSE_HEADERS, **response_headers(ctx)})
    translator = _StreamTranslator(ctx, names)
    try:
        await response.prepare(request)
        try:
            async for chunk in upstream.iter_chunks():
                ctx.first_byte()
                out = translator.feed(chunk)
                if out:
                    await response.write(out)
            await response.write(translator.finish())
        except RouterdError as err:
            ctx.fail(err)
            await response.write(encode_frame(anthropic_envelope(err, ctx.request_id), "error"))
        await response.write_eof()
    except ConnectionError:
        ctx.status = CLIENT_CLOSED
    finally:
        upstream.release()
    return response


async def messages(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    ctx = RequestContext(request[REQUEST_ID], INGRESS, gateway.table)
    gateway.metrics.request_started()
    try:
        ctx.key = authenticate(request, ctx.table)
        body = await read_json_body(request)
        model = body.get("model")
        ctx.model = model if isinstance(model, str) else ""
        req = _decode(body)
        ctx.stream = req.stream
        ctx.route = admit_model(ctx.table, ctx.key, req.model)
        req = _clamp(req, ctx.route)
        names = ToolNameMap.for_request(req)
        upstream_body, dropped = _upstream_body(req, names)
        gateway.metrics.dropped_fields(INGRESS, dropped)
        response = await first_answer(ctx, ctx.route, upstream_body)
        if not ctx.stream:
            return await _complete(ctx, response, names)
        return await _stream(request, ctx, response, names)
    except RouterdError as err:
        ctx.fail(err)
        raise
    except asyncio.CancelledError:
        ctx.status = CLIENT_CLOSED
        raise
    except Exception:
        ctx.status, ctx.error_code = 500, ErrorCode.internal_error.name
        raise
    finally:
        gateway.metrics.request_finished()
        finish(gateway, ctx)
