"""`POST /v1/chat/completions`: the OpenAI Chat Completions ingress on the passthrough path.

Steps, as plain calls: parse and check the few fields routerd needs -> authenticate -> admit the
model -> try candidate deployments (moving on only while nothing was sent to the client) ->
relay the upstream answer (raw bytes; stream frames scanned for usage, the usage chunk stripped
when the client did not ask for it) -> meter. Unknown request fields survive untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, finish
from routerd.server.middleware import REQUEST_ID
from routerd.server.pipeline import (
    GATEWAY,
    first_answer,
    read_json_body,
    response_headers,
)
from routerd.server.sse_relay import CLIENT_CLOSED, relay_openai_stream

INGRESS = "chat_completions"
__all__ = ["GATEWAY", "chat_completions"]


def check_chat_body(body: dict[str, Any]) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "'model' is required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RouterdError(
            ErrorCode.invalid_request,
            "'messages' is required and must be a non-empty array",
            param="messages",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RouterdError(ErrorCode.invalid_request, "'stream' must be a boolean", param="stream")
    return model, stream


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def _complete(ctx: RequestContext, response: UpstreamResponse) -> web.Response:
    try:
        payload = await response.read()
    finally:
        response.release()
    ctx.first_byte()
    try:
        ctx.usage = Usage.from_openai(orjson.loads(payload).get("usage"))
    except (orjson.JSONDecodeError, AttributeError):
        raise UpstreamError(
            ErrorCode.provider_unavailable, "the upstream sent a malformed JSON body"
        ) from None
    return web.Response(
        body=payload, content_type="application/json", headers=response_headers(ctx)
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    ctx = RequestContext(request[REQUEST_ID], INGRESS, gateway.table)
    gateway.metrics.request_started()
    try:
        ctx.key = authenticate(request, ctx.table)
        body = await read_json_body(request)
        ctx.model, ctx.stream = check_chat_body(body)
        ctx.route = admit_model(ctx.table, ctx.key, ctx.model)
        client_wants_usage = _wants_usage(body)
        if ctx.stream and not client_wants_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response = await first_answer(ctx, ctx.route, body)
        if not ctx.stream:
            return await _complete(ctx, response)
        return await relay_openai_stream(
            request, ctx, response, response_headers(ctx), client_wants_usage
        )
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
