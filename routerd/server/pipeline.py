"""Steps shared by every ingress handler: read the body, try candidate deployments, headers.

Each step is a plain call (no middleware): handlers compose them in order, so a later stage
(budgets, cache, guardrails) can be inserted between admission and routing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from routerd.errors import ErrorCode, RouterdError
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.server.context import RequestContext
from routerd.server.gateway import Gateway
from routerd.table import DeploymentRoute, ModelRoute

GATEWAY = web.AppKey("gateway", Gateway)
_RETRYABLE = {
    ErrorCode.provider_unavailable,
    ErrorCode.provider_timeout,
    ErrorCode.provider_rate_limit,
    ErrorCode.provider_overloaded,
}


async def read_json_body(request: web.Request) -> dict[str, Any]:
    body, _ = await read_json(request)
    return body


async def read_json(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and its raw bytes (their length bounds the prompt tokens)."""
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
    return body, raw


def candidates(route: ModelRoute) -> list[DeploymentRoute]:
    """Deployments in try order: a weighted draw first, then the rest by weight."""
    deps = list(route.deployments)
    if len(deps) < 2:
        return deps
    first = random.choices(deps, weights=[d.deployment.weight for d in deps])[0]
    rest = sorted((d for d in deps if d is not first), key=lambda d: -d.deployment.weight)
    return [first, *rest]


@dataclass(frozen=True, slots=True)
class Prepared:
    """The body (and client headers to forward) for one deployment."""

    body: dict[str, Any]
    headers: dict[str, str]
    embeddings: bool = False


async def _send(ctx: RequestContext, dep: DeploymentRoute, prepared: Prepared) -> UpstreamResponse:
    ctx.attempts += 1
    ctx.provider = dep.provider.config.name
    ctx.upstream_model = dep.deployment.model
    ctx.wire = dep.provider.adapter.wire_format
    adapter = dep.provider.adapter
    if prepared.embeddings:
        built = adapter.build_embeddings_request(dep.deployment.model, prepared.body)
        if built is None:
            raise RouterdError(
                ErrorCode.invalid_request,
                f"provider {ctx.provider!r} of model {ctx.route.id if ctx.route else ''!r} "
                "serves no embeddings",
                param="model",
            )
        upstream = built
    else:
        upstream = adapter.build_request(
            dep.deployment.model, prepared.body, ctx.stream, prepared.headers
        )
    response = await dep.provider.transport.send(upstream)
    if response.status >= 400:
        payload = await response.read()
        response.release()
        raise dep.provider.adapter.classify_error(response.status, payload, response.headers)
    return response


async def first_answer(
    ctx: RequestContext, route: ModelRoute, prepare: Callable[[DeploymentRoute], Prepared]
) -> UpstreamResponse:
    """Try candidates in order; move on only for failures another deployment may not have."""
    last: UpstreamError | None = None
    for dep in candidates(route):
        try:
            return await _send(ctx, dep, prepare(dep))
        except UpstreamError as err:
            last = err
            if err.code not in _RETRYABLE:
                raise
    assert last is not None
    raise last


def response_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {
        "X-Request-Id": ctx.request_id,
        "x-routerd-provider": ctx.provider or "",
        "x-routerd-model": ctx.route.id if ctx.route else "",
    }
    if ctx.rate is not None:
        headers.update(ctx.rate.headers())
    return headers
