"""`POST /v1/chat/completions`: the OpenAI Chat Completions ingress on the passthrough path.

Steps, as plain calls: parse and check the few fields routerd needs -> authenticate -> admit the
model -> try candidate deployments (moving on only while nothing was sent to the client) ->
relay the upstream answer (raw bytes; stream frames scanned for usage, the usage chunk stripped
when the client did not ask for it) -> meter. Unknown request fields survive untouched.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from aiohttp import web

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, finish
from routerd.server.gateway import Gateway
from routerd.server.middleware import REQUEST_ID
from routerd.server.sse_relay import CLIENT_CLOSED, relay_openai_stream
from routerd.table import DeploymentRoute, ModelRoute

GATEWAY = web.AppKey("gateway", Gateway)
INGRESS = "chat_completions"
_RETRYABLE = {
    ErrorCode.provider_unavailable,
    ErrorCode.provider_timeout,
    ErrorCode.provider_rate_limit,
    ErrorCode.provider_overloaded,
}


async def read_json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RouterdError(
            ErrorCode.payload_too_large,
            "request body is larger than the configured max_body_bytes",
        ) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RouterdError(
            ErrorCode.invalid_request, f"request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise RouterdError(ErrorCode.invalid_request, "request body must be a JSON object")
    return body


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


def candidates(route: ModelRoute) -> list[DeploymentRoute]:
    """Deployments in try order: a weighted draw first, then the rest by weight."""
    deps = list(route.deployments)
    if len(deps) < 2:
        return deps
    first = random.choices(deps, weights=[d.deployment.weight for d in deps])[0]
    rest = sorted((d for d in deps if d is not first), key=lambda d: -d.deployment.weight)
    return [first, *rest]


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def _send(
    ctx: RequestContext, dep: DeploymentRoute, body: dict[str, Any]
) -> UpstreamResponse:
    ctx.attempts += 1
    ctx.provider = dep.provider.config.name
    ctx.upstream_model = dep.deployment.model
    upstream = dep.provider.adapter.build_request(dep.deployment.model, body, ctx.stream)
    response = await dep.provider.transport.send(upstream)
    if response.status >= 400:
        payload = await response.read()
        response.release()
        raise dep.provider.adapter.classify_error(response.status, payload, response.headers)
    return response


async def _first_answer(
    ctx: RequestContext, route: ModelRoute, body: dict[str, Any]
) -> UpstreamResponse:
    last: UpstreamError | None = None
    for dep in candidates(route):
        try:
            return await _send(ctx, dep, dict(body))
        except UpstreamError as err:
            last = err
            if err.code not in _RETRYABLE:
                raise
    assert last is not None
    raise last


def _headers(ctx: RequestContext) -> dict[str, str]:
    return {
        "X-Request-Id": ctx.request_id,
        "x-routerd-provider": ctx.provider or "",
        "x-routerd-model": ctx.route.id if ctx.route else "",
    }


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
    return web.Response(body=payload, content_type="application/json", headers=_headers(ctx))


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
        response = await _first_answer(ctx, ctx.route, body)
        if not ctx.stream:
            return await _complete(ctx, response)
        return await relay_openai_stream(request, ctx, response, _headers(ctx), client_wants_usage)
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
