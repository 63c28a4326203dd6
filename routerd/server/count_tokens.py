"""`POST /v1/messages/count_tokens`: Anthropic's token count endpoint.

For a model whose first planned candidate is an Anthropic upstream, the upstream's own count (the
body is forwarded with only `model` rewritten; routing fields are taken off first). Otherwise,
or when that upstream fails in a way another try might not (down, timeout, 429, overloaded),
routerd's documented estimate (`routerd/formats/estimate.py`), marked with the response header
`x-routerd-token-count: estimate`. Counting costs nothing; it is
journaled with ingress `count_tokens` and zero tokens, so every finished request still has its
line.
"""

from __future__ import annotations

from typing import Any

import orjson

from routerd.errors import ErrorCode, RouterdError
from routerd.formats import anthropic_messages
from routerd.formats.canonical import TranslationError
from routerd.formats.estimate import estimate_input_tokens
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.routing.presets import expand_preset
from routerd.routing.retry import is_retryable
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, metered
from routerd.server.http import JSON_HEADERS, Answer, Reply, Request
from routerd.server.pipeline import GATEWAY, plan_request, read_json_body, response_headers
from routerd.table import DeploymentRoute

INGRESS = "count_tokens"


def _check(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "model: Field required", param="model")
    if not isinstance(body.get("messages"), list):
        raise RouterdError(ErrorCode.invalid_request, "messages: Field required", param="messages")
    return model


def _estimate(body: dict[str, Any]) -> int:
    try:
        req = anthropic_messages.decode_request({"max_tokens": 1, **body})
    except TranslationError as exc:
        raise RouterdError(ErrorCode.invalid_request, str(exc), param=exc.field) from None
    return estimate_input_tokens(req)


async def _upstream_count(
    request: Request, ctx: RequestContext, dep: DeploymentRoute, body: dict[str, Any]
) -> bytes | None:
    forwarded = {"anthropic-beta": v} if (v := request.headers.get("anthropic-beta")) else None
    built = dep.provider.adapter.build_count_tokens_request(
        dep.deployment.model, dict(body), forwarded
    )
    if built is None:
        return None
    built.timeouts = dep.timeouts
    ctx.attempts += 1
    ctx.provider, ctx.upstream_model = dep.provider.config.name, dep.deployment.model
    response: UpstreamResponse = await dep.provider.transport.send(built)
    try:
        payload = await response.read()
    finally:
        response.release()  # also when the body fails: the provider's slot comes back
    if response.status >= 400:
        raise dep.provider.adapter.classify_error(response.status, payload, response.headers)
    return payload


async def count_tokens(request: Request) -> Answer:
    gateway = request.app[GATEWAY]
    ctx = RequestContext(request.request_id, INGRESS, gateway.table)
    async with metered(gateway, ctx):
        ctx.key = authenticate(request, ctx.table)
        body = await read_json_body(request)
        presets = ctx.table.config.catalog.presets
        body, preset = expand_preset(presets, body, "messages", parameters=False)
        name = _check(body)
        ctx.model = preset or name
        ctx.route = admit_model(ctx.table, ctx.key, name)
        candidates = plan_request(gateway, ctx, request, body)
        first = candidates[0]
        ctx.route = first.route
        headers = response_headers(ctx)
        try:
            payload = await _upstream_count(request, ctx, first.deployment, body)
        except UpstreamError as err:
            if not is_retryable(err.code):
                raise
            payload = None  # the upstream cannot count now: answer with the estimate
        if payload is None:
            payload = orjson.dumps({"input_tokens": _estimate(body)})
            headers["x-routerd-token-count"] = "estimate"
        return Reply(payload, 200, {**JSON_HEADERS, **headers})
