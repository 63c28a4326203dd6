"""Steps shared by every ingress handler: read the body, plan candidates, try them, headers.

Each step is a plain call (no middleware): handlers compose them in order, so a later stage
(budgets, cache, guardrails) can be inserted between planning and sending. `first_answer` is the
retry seam: it moves on to the next candidate only while nothing was sent to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from routerd.config.model import RetryConfig
from routerd.errors import ErrorCode, RouterdError
from routerd.providers.base import UpstreamError, UpstreamResponse
from routerd.routing.health import Refusal
from routerd.routing.plan import ROUTE_HEADER, Candidate, plan, take_preferences
from routerd.routing.retry import SKIPS_PROVIDER, Backoff, is_retryable
from routerd.server.attempts import Prepared, attempt
from routerd.server.context import RequestContext
from routerd.server.gateway import Gateway
from routerd.server.http import Request

GATEWAY = web.AppKey("gateway", Gateway)
__all__ = ["GATEWAY", "Prepared", "first_answer", "plan_request", "read_json_body"]


async def read_json_body(request: Request) -> dict[str, Any]:
    body, _ = await read_json(request)
    return body


async def read_json(request: Request) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and its raw bytes (their length bounds the prompt tokens)."""
    raw = request.body_if_read
    if raw is None:
        raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RouterdError(
            ErrorCode.invalid_request, f"request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise RouterdError(ErrorCode.invalid_request, "request body must be a JSON object")
    return body, raw


def plan_request(
    gateway: Gateway, ctx: RequestContext, request: Request, body: dict[str, Any]
) -> tuple[Candidate, ...]:
    """The admitted model's candidates, with the request's routing fields taken off `body`."""
    assert ctx.key is not None and ctx.route is not None
    prefs = take_preferences(body, request.headers.get(ROUTE_HEADER))
    return plan(ctx.table, ctx.key, ctx.route, prefs, gateway.health)


def _refused(candidate: Candidate, why: Refusal, wait: float) -> UpstreamError:
    label = candidate.deployment.label
    if why is Refusal.cooling:
        return UpstreamError(
            ErrorCode.provider_rate_limit,
            f"deployment {label} asked routerd to wait (Retry-After)",
            retry_after=wait or None,
        )
    return UpstreamError(
        ErrorCode.provider_unavailable,
        f"deployment {label} is failing (circuit breaker open); retry later",
        retry_after=wait or None,
    )


async def _back_off(retries: RetryConfig, attempts: int, last: UpstreamError, same: bool) -> bool:
    """Wait before the next attempt; False when that candidate is to be skipped instead."""
    delay = Backoff(retries).delay(attempts, last.retry_after, same)
    if delay is None:
        return False
    await asyncio.sleep(delay)
    return True


async def first_answer(
    gateway: Gateway,
    ctx: RequestContext,
    candidates: tuple[Candidate, ...],
    prepare: Callable[[Candidate], Prepared],
) -> UpstreamResponse:
    """Try candidates in order; move on only for failures another deployment may not have,
    with a short jittered backoff, at most `retries.max_attempts` attempts."""
    retries = ctx.table.config.daemon.retries
    health = gateway.health
    last: UpstreamError | None = None
    previous: Candidate | None = None
    skipped: set[str] = set()
    for candidate in candidates:
        dep = candidate.deployment
        provider = dep.provider.config.name
        if ctx.attempts >= retries.max_attempts:
            break
        breaker = dep.provider.config.breaker
        if provider in skipped:
            continue
        why = health.refusal(dep.key, breaker)
        if why is not None:
            last = last or _refused(candidate, why, health.retry_in(dep.key, breaker))
            continue
        if last is not None and previous is not None:
            same = previous.deployment.provider.config.name == provider
            if not await _back_off(retries, ctx.attempts, last, same):
                continue
        prepared = prepare(candidate)
        why = health.acquire(dep.key, breaker)
        if why is not None:
            last = last or _refused(candidate, why, health.retry_in(dep.key, breaker))
            continue
        try:
            response = await attempt(gateway, ctx, candidate, prepared)
        except UpstreamError as err:
            if not is_retryable(err.code):
                raise
            last, previous = err, candidate
            if err.code in SKIPS_PROVIDER:
                skipped.add(provider)
            continue
        if candidate.route.id != candidates[0].route.id:
            gateway.metrics.fallback(candidates[0].route.id, candidate.route.id)
        return response
    if last is None:
        last = UpstreamError(ErrorCode.provider_unavailable, "no deployment could be tried")
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
