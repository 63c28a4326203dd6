"""One attempt: send a request to one candidate deployment and account for how it went.

An attempt updates the request context (which provider, deployment and model are answering),
counts in-flight requests per provider, and reports its outcome to the deployment's health
(breaker, error rate, latency) and to `routerd_upstream_attempts_total`. A non-streamed answer is
read whole inside the attempt, so a body that times out, breaks off or is not JSON is still a
failed attempt the next candidate can make up for. A streamed answer is handed on as soon as
its headers arrive, wrapped so that its outcome is settled when the relay releases it: success,
or the mid-stream failure the relay recorded on the context.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from routerd.errors import ErrorCode, RouterdError
from routerd.providers.base import BufferedResponse, UpstreamError, UpstreamResponse
from routerd.routing.plan import Candidate
from routerd.routing.retry import counts_against_deployment
from routerd.server.context import CLIENT_CLOSED, RequestContext
from routerd.server.gateway import Gateway

_UPSTREAM_FAILURES = frozenset(
    code.name
    for code in (
        ErrorCode.provider_unavailable,
        ErrorCode.provider_timeout,
        ErrorCode.provider_rate_limit,
        ErrorCode.provider_overloaded,
    )
)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The body (and client headers to forward) for one deployment."""

    body: dict[str, Any]
    headers: dict[str, str]
    embeddings: bool = False


class _Attempt:
    """The bookkeeping of one attempt: started once, settled exactly once."""

    def __init__(self, gateway: Gateway, ctx: RequestContext, candidate: Candidate) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.dep = candidate.deployment
        self.model = candidate.route.id
        self.provider = self.dep.provider.config.name
        self.started = time.perf_counter()
        self.settled = False
        gateway.metrics.upstream_inflight(self.provider, 1)

    def ok(self) -> None:
        self._settle("ok")
        self.gateway.health.succeeded(
            self.dep.key, self.dep.provider.config.breaker, time.perf_counter() - self.started
        )

    def failed(self, err: RouterdError) -> None:
        self._settle(err.code.name)
        health, key = self.gateway.health, self.dep.key
        local = isinstance(err, UpstreamError) and err.local
        if counts_against_deployment(err.code) and not local:
            retry_after = err.retry_after if isinstance(err, UpstreamError) else None
            health.failed(key, self.dep.provider.config.breaker, retry_after)
        else:
            health.released(key)

    def neutral(self, outcome: str) -> None:
        self._settle(outcome)
        self.gateway.health.released(self.dep.key)

    def first_byte(self) -> None:
        self.gateway.health.observe_ttft(self.dep.key, time.perf_counter() - self.started)

    def _settle(self, outcome: str) -> None:
        self.settled = True
        metrics = self.gateway.metrics
        metrics.upstream_inflight(self.provider, -1)
        metrics.upstream_attempt(self.provider, self.model, outcome)


class TrackedStream:
    """A streamed upstream answer whose attempt is settled when the relay releases it.

    The attempt's time to first byte is taken by the relay's `ctx.first_byte()` (the context's
    hook), so the body's chunks come straight from the transport: no generator layer per chunk.
    """

    def __init__(self, response: UpstreamResponse, attempt: _Attempt) -> None:
        self._response = response
        self._attempt = attempt
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        attempt.ctx.on_first_byte = attempt.first_byte

    async def read(self) -> bytes:
        return await self._response.read()

    def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        return self._response.iter_chunks()

    def release(self) -> None:
        self._response.release()
        attempt = self._attempt
        if attempt.settled:
            return
        ctx = attempt.ctx
        if ctx.error_code in _UPSTREAM_FAILURES:
            attempt.failed(RouterdError(ErrorCode[ctx.error_code or ""], ""))
        elif ctx.status == CLIENT_CLOSED:
            attempt.neutral("client_closed")
        else:
            attempt.ok()


def _malformed() -> UpstreamError:
    return UpstreamError(ErrorCode.provider_unavailable, "the upstream sent a malformed JSON body")


async def _buffered(response: UpstreamResponse) -> BufferedResponse:
    try:
        body = await response.read()
    finally:
        response.release()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _malformed() from None
    if not isinstance(data, dict):
        raise _malformed()
    return BufferedResponse(response.status, response.headers, body, data)


def _build(ctx: RequestContext, candidate: Candidate, prepared: Prepared) -> Any:
    dep = candidate.deployment
    adapter = dep.provider.adapter
    if prepared.embeddings:
        built = adapter.build_embeddings_request(dep.deployment.model, prepared.body)
        if built is None:
            raise RouterdError(
                ErrorCode.invalid_request,
                f"provider {ctx.provider!r} of model {candidate.route.id!r} serves no embeddings",
                param="model",
            )
        upstream = built
    else:
        upstream = adapter.build_request(
            dep.deployment.model, prepared.body, ctx.stream, prepared.headers
        )
    upstream.timeouts = dep.timeouts
    return upstream


def _enter(ctx: RequestContext, candidate: Candidate) -> None:
    dep = candidate.deployment
    ctx.attempts += 1
    ctx.route = candidate.route
    ctx.provider = dep.provider.config.name
    ctx.upstream_model = dep.deployment.model
    ctx.deployment = dep.label
    ctx.wire = dep.provider.adapter.wire_format


async def attempt(
    gateway: Gateway, ctx: RequestContext, candidate: Candidate, prepared: Prepared
) -> UpstreamResponse:
    """Send to one candidate (whose health slot the caller acquired); raise its classified
    failure, or return its answer."""
    _enter(ctx, candidate)
    dep = candidate.deployment
    tracked = _Attempt(gateway, ctx, candidate)
    try:
        upstream = _build(ctx, candidate, prepared)
        response = await dep.provider.transport.send(upstream)
        if response.status >= 400:
            try:
                payload = await response.read()
            finally:
                response.release()
            raise dep.provider.adapter.classify_error(response.status, payload, response.headers)
        if ctx.stream:
            return TrackedStream(response, tracked)
        buffered = await _buffered(response)
    except RouterdError as err:
        tracked.failed(err)
        raise
    except BaseException:
        tracked.neutral("cancelled")
        raise
    tracked.first_byte()
    tracked.ok()
    return buffered
