"""Per-request state and the meter step: usage -> exact cost -> journal line and metrics.

`RequestContext` travels through the plain steps of a handler; `finish` runs once per request
(success or failure) and is the only place that writes the journal line for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.pricing import cost_pico
from routerd.metering.usage import JournalRecord, Usage
from routerd.server.gateway import Gateway
from routerd.table import KeyEntry, ModelRoute, RoutingTable

log = structlog.get_logger("routerd.request")
CLIENT_CLOSED = 499  # nginx's status for a client that went away before the answer ended


@dataclass(slots=True)
class RequestContext:
    request_id: str
    ingress: str
    table: RoutingTable
    started: float = field(default_factory=time.perf_counter)
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    key: KeyEntry | None = None
    model: str = ""
    route: ModelRoute | None = None
    provider: str | None = None
    upstream_model: str | None = None
    wire: str = ""
    stream: bool = False
    status: int = 200
    error_code: str | None = None
    usage: Usage | None = None
    ttft: float | None = None
    attempts: int = 0
    deployment: str | None = None  # "provider/upstream_model" of the deployment that answered

    def fail(self, err: RouterdError) -> None:
        self.status = err.status
        self.error_code = err.code.name

    def first_byte(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started


def finish(gateway: Gateway, ctx: RequestContext) -> None:
    """Meter one finished request: cost, journal line, metrics, one log event."""
    elapsed = time.perf_counter() - ctx.started
    usage = ctx.usage or Usage()
    cost = cost_pico(usage, ctx.route.prices) if ctx.route and ctx.usage else 0
    key = ctx.key.config if ctx.key else None
    record = JournalRecord(
        ts=ctx.ts,
        request_id=ctx.request_id,
        key_id=key.id if key else None,
        user=key.user if key else None,
        tags=key.tags if key else (),
        ingress=ctx.ingress,
        model=ctx.model,
        resolved_model=ctx.route.id if ctx.route else None,
        provider=ctx.provider,
        upstream_model=ctx.upstream_model,
        stream=ctx.stream,
        status=ctx.status,
        error_code=ctx.error_code,
        latency_ms=round(elapsed * 1000),
        ttft_ms=round(ctx.ttft * 1000) if ctx.ttft is not None else None,
        attempts=ctx.attempts,
        config_generation=ctx.table.generation,
        deployment=ctx.deployment,
    )
    record.set_usage(usage, cost)
    gateway.generations.put(record)
    try:
        gateway.journal.submit(record)
    except RuntimeError:
        log.error("journal_closed", request_id=ctx.request_id)
    gateway.metrics.observe_request(
        ingress=ctx.ingress,
        model=ctx.route.id if ctx.route else "",
        provider=ctx.provider or "",
        status=ctx.status,
        duration_s=elapsed,
        ttft_s=ctx.ttft,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_pico=cost,
    )
    log.info(
        "request",
        request_id=ctx.request_id,
        key_id=record.key_id,
        ingress=ctx.ingress,
        model=record.resolved_model,
        provider=ctx.provider,
        status=ctx.status,
        error_code=ctx.error_code,
        latency_ms=record.latency_ms,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


@contextmanager
def metered(gateway: Gateway, ctx: RequestContext) -> Iterator[None]:
    """Wrap one handler: in-flight gauge, the outcome recorded on `ctx`, and `finish` always."""
    gateway.metrics.request_started()
    try:
        yield
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
