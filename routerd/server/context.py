"""Per-request state and the meter step: usage -> exact cost -> journal line and metrics.

`RequestContext` travels through the plain steps of a handler; `finish` runs once per request
(success or failure) and is the only place that writes the journal line for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import TracebackType

import structlog

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.ledger import Reservation, Settled
from routerd.metering.pricing import cost_pico
from routerd.metering.ratelimit import RateDecision
from routerd.metering.usage import JournalRecord, Usage, finished_record
from routerd.server.gateway import Gateway
from routerd.server.http import Answer, Reply
from routerd.table import KeyEntry, ModelRoute, RoutingTable

log = structlog.get_logger("routerd.request")
CLIENT_CLOSED = 499  # nginx's status for a client that went away before the answer ended


@dataclass(slots=True)
class RequestContext:
    request_id: str
    ingress: str
    table: RoutingTable
    started: float = field(default_factory=time.perf_counter)
    ts: datetime = field(default_factory=partial(datetime.now, UTC))  # C call, no lambda frame
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
    rate: RateDecision | None = None
    reservation: Reservation | None = None
    prompt_estimate: int = 0  # tokens (bytes / 4), for a stream cut before its usage arrived
    frames_sent: int = 0  # SSE events written to the client
    deployment: str | None = None  # "provider/upstream_model" of the deployment that answered
    on_first_byte: Callable[[], None] | None = None  # the answering attempt's, for a stream

    def fail(self, err: RouterdError) -> None:
        self.status = err.status
        self.error_code = err.code.name

    def first_byte(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started
            hook, self.on_first_byte = self.on_first_byte, None
            if hook is not None:
                hook()


def streamed_usage(usage: Usage, ctx: RequestContext) -> Usage:
    """A stream that ended early (client gone, upstream failed): meter what was streamed.

    The prompt was sent in full: the upstream's count if it arrived, else the bytes / 4 estimate.
    Output: at least one token per event written to the client.
    """
    return dataclasses.replace(
        usage,
        prompt_tokens=usage.prompt_tokens or ctx.prompt_estimate,
        completion_tokens=max(usage.completion_tokens, ctx.frames_sent),
    )


async def finish(gateway: Gateway, ctx: RequestContext) -> None:
    """Meter one finished request: settle, cost, journal line, metrics, one log event.

    The settlement gives back what admission took in one store call: the exact cost for the
    budget holds, the slots, the token estimate."""
    elapsed = time.perf_counter() - ctx.started
    usage = ctx.usage or Usage()
    status = ctx.status
    estimated = ctx.frames_sent > 0 and status >= 400
    if estimated:
        usage = streamed_usage(usage, ctx)
    route = ctx.route
    cost = cost_pico(usage, route.prices) if route and (ctx.usage or estimated) else 0
    key = ctx.key.config if ctx.key else None
    key_id, user, tags = (key.id, key.user, key.tags) if key else (None, None, ())
    resolved = route.id if route else None
    ttft = ctx.ttft
    record = finished_record(
        ctx.ts, ctx.request_id, key_id, user, tags, ctx.ingress, ctx.model, resolved,
        ctx.provider, ctx.upstream_model, ctx.stream, status, ctx.error_code, usage, cost,
        round(elapsed * 1000), round(ttft * 1000) if ttft is not None else None, ctx.attempts,
        ctx.table.generation, ctx.deployment, estimated,
    )  # fmt: skip
    gateway.generations.put(record)
    gateway.touch(key_id, ctx.ts)
    reservation = ctx.reservation
    if reservation is not None or cost:
        done = Settled(ctx.request_id, key_id, user, tags, resolved or "", cost)
        tokens = usage.prompt_tokens + usage.completion_tokens
        await gateway.ledger.settle(reservation, done, tokens)
    journal = gateway.journal
    try:
        if not journal.offer(record):
            await journal.put(record)
    except RuntimeError:
        log.error("journal_closed", request_id=ctx.request_id)
    gateway.metrics.observe_request(
        ctx.ingress, resolved or "", ctx.provider or "", status, elapsed, ttft,
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
        usage.cache_write_tokens, usage.reasoning_tokens, cost,
    )  # fmt: skip
    _log_request(ctx, record)


def _log_request(ctx: RequestContext, record: JournalRecord) -> None:
    """The per-request event at info; at a higher level only a level check runs (no kwargs)."""
    logger = log.bind()  # what the lazy proxy does per call; the filtering logger is cached
    if logger.is_enabled_for(logging.INFO):
        logger.info(
            "request",
            request_id=ctx.request_id,
            key_id=record.key_id,
            ingress=ctx.ingress,
            model=record.resolved_model,
            provider=ctx.provider,
            status=ctx.status,
            error_code=ctx.error_code,
            latency_ms=record.latency_ms,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )


class metered:  # lower case: used as `async with metered(gateway, ctx)`, like a function
    """Wrap one handler: in-flight gauge, the outcome recorded on `ctx`, and `finish` always.

    `finish` is shielded: a client that goes away still gets its request settled and journaled.
    A whole reply passed through `reply_first` is metered after the engine wrote it.
    (A class, not `@asynccontextmanager`: no generator to drive per request.)
    """

    __slots__ = ("_ctx", "_deferred", "_gateway")

    def __init__(self, gateway: Gateway, ctx: RequestContext) -> None:
        self._gateway = gateway
        self._ctx = ctx
        self._deferred = False

    async def __aenter__(self) -> metered:
        self._gateway.metrics.request_started()
        return self

    def reply_first(self, answer: Answer) -> Answer:
        """The block's last step: a whole `Reply` gets the meter step as its `after` (the
        engine writes it, then meters); a stream was metered by the time it ended anyway."""
        if type(answer) is Reply:
            self._deferred = True
            answer.after = self._finish_after_reply
        return answer

    async def _finish_after_reply(self) -> None:
        self._gateway.metrics.request_finished()
        await finish(self._gateway, self._ctx)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._deferred and exc is None:
            return  # the engine meters it once the reply is written
        gateway, ctx = self._gateway, self._ctx
        if isinstance(exc, RouterdError):
            ctx.fail(exc)
            if ctx.rate is not None:
                for name, value in ctx.rate.headers().items():
                    exc.headers.setdefault(name, value)
        elif isinstance(exc, asyncio.CancelledError):
            ctx.status = CLIENT_CLOSED
        elif isinstance(exc, Exception):
            ctx.status, ctx.error_code = 500, ErrorCode.internal_error.name
        gateway.metrics.request_finished()
        # Only a handler that raised can be in the middle of a cancellation (routerd's steps
        # never swallow one): a success skips the task lookup, a getpid system call on 3.11.
        task = asyncio.current_task() if exc is not None else None
        if task is not None and task.cancelling():
            await asyncio.shield(finish(gateway, ctx))
        else:
            await finish(gateway, ctx)
