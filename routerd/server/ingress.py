"""The request path shared by every chat-style ingress, as plain steps.

authenticate -> read the body -> expand a preset -> check the body -> admit the model -> plan the
candidates (model fallbacks x deployments, `routerd/routing/plan.py`) -> for each candidate,
prepare its body (passthrough when the upstream speaks the ingress's own wire format, only the
model rewritten; otherwise translate through the canonical form) -> send, moving on only while
nothing was sent to the client -> relay or translate the answer -> meter (always, in `finally`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from routerd.errors import ErrorCode, RouterdError
from routerd.formats.canonical import CanonicalRequest, ToolNameMap, TranslationError
from routerd.formats.codecs import INGRESS, WIRE, IngressCodec
from routerd.routing.plan import Candidate
from routerd.routing.presets import expand_preset
from routerd.server.admission import admit, estimate
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, metered
from routerd.server.gateway import Gateway
from routerd.server.http import Answer, Request
from routerd.server.pipeline import (
    GATEWAY,
    Prepared,
    first_answer,
    plan_request,
    read_json,
)
from routerd.server.sse_relay import ChatUsageFilter
from routerd.server.translate import (
    StreamTranslator,
    UsageScanner,
    passthrough_json,
    relay_stream,
    translated_json,
)
from routerd.table import ModelRoute


@dataclass(frozen=True, slots=True)
class IngressSpec:
    name: str
    check: Callable[[dict[str, Any]], tuple[str, bool]]
    forward_headers: tuple[str, ...] = ()

    @property
    def codec(self) -> IngressCodec:
        return INGRESS[self.name]


def _translation_error(exc: TranslationError) -> RouterdError:
    return RouterdError(ErrorCode.invalid_request, str(exc), param=exc.field)


def _clamp(req: CanonicalRequest, route: ModelRoute) -> CanonicalRequest:
    cap = route.config.max_output_tokens
    wanted = req.sampling.max_tokens
    if cap is None or wanted is None or wanted <= cap:
        return req
    return dataclasses.replace(req, sampling=dataclasses.replace(req.sampling, max_tokens=cap))


_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _clamp_raw(body: dict[str, Any], route: ModelRoute) -> dict[str, Any]:
    """Passthrough: cap the output-token fields at the catalog's `max_output_tokens`."""
    cap = route.config.max_output_tokens
    if cap is not None:
        for name in _MAX_TOKEN_FIELDS:
            value = body.get(name)
            if isinstance(value, int) and value > cap:
                body[name] = cap
    return body


class _Request:
    """One client request as each candidate deployment needs it: raw or translated."""

    def __init__(
        self, spec: IngressSpec, body: dict[str, Any], gateway: Gateway, forwarded: dict[str, str]
    ) -> None:
        self.spec = spec
        self.body = body
        self.gateway = gateway
        self.forwarded = forwarded  # client headers passed on to a same-format upstream
        self.client_wants_usage = _wants_usage(body)
        self.canonical: CanonicalRequest | None = None
        self._names: ToolNameMap | None = None

    @property
    def names(self) -> ToolNameMap:
        """The tool names of the translated request (built when it is translated)."""
        if self._names is None:
            self._names = ToolNameMap()
        return self._names

    def translated(self, route: ModelRoute) -> CanonicalRequest:
        if self.canonical is None:
            try:
                self.canonical = self.spec.codec.decode_request(self.body)
            except TranslationError as exc:
                raise _translation_error(exc) from None
            self._names = ToolNameMap.for_request(self.canonical)
        return _clamp(self.canonical, route)

    def prepare(self, candidate: Candidate) -> Prepared:
        """The body for one candidate; clamped to the answering model's own output limit."""
        route, wire = candidate.route, candidate.deployment.provider.adapter.wire_format
        if wire == self.spec.codec.name:
            body = _clamp_raw(dict(self.body), route)
            if body.get("stream") and wire == "openai_chat":
                body["stream_options"] = {
                    **(body.get("stream_options") or {}),
                    "include_usage": True,
                }
            return Prepared(body, self.forwarded)
        req = self.translated(route)
        default_max = route.config.max_output_tokens
        try:
            body, dropped = WIRE[wire].encode_request(req, self.names, default_max)
        except TranslationError as exc:
            raise _translation_error(exc) from None
        if dropped:
            self.gateway.metrics.dropped_fields(self.spec.name, dropped)
        return Prepared(body, {})


def _forwarded(request: Request, spec: IngressSpec) -> dict[str, str]:
    if not spec.forward_headers:
        return {}
    return {h: v for h in spec.forward_headers if (v := request.headers.get(h))}


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def _answer(
    request: Request,
    ctx: RequestContext,
    call: _Request,
    candidates: tuple[Candidate, ...],
) -> Answer:
    response = await first_answer(call.gateway, ctx, candidates, call.prepare)
    wire = WIRE[ctx.wire]
    codec = call.spec.codec
    if ctx.wire == codec.name:
        if not ctx.stream:
            return await passthrough_json(ctx, response, wire)
        scanner: ChatUsageFilter | UsageScanner = (
            ChatUsageFilter(ctx, call.client_wants_usage)
            if ctx.wire == "openai_chat"
            else UsageScanner(ctx, wire)
        )
        return await relay_stream(request, ctx, response, codec, scanner)
    if not ctx.stream:
        return await translated_json(ctx, response, wire, codec, call.names)
    encoder = codec.stream_encoder(ctx.model, call.client_wants_usage)
    translator = StreamTranslator(ctx, wire, encoder, call.names)
    return await relay_stream(request, ctx, response, codec, translator)


async def handle(request: Request, spec: IngressSpec) -> Answer:
    gateway = request.app[GATEWAY]
    ctx = RequestContext(request.request_id, spec.name, gateway.table)
    async with metered(gateway, ctx) as meter:
        ctx.key = authenticate(request, ctx.table)
        body, raw = await read_json(request)
        body, preset = expand_preset(ctx.table.config.catalog.presets, body, spec.name)
        name, ctx.stream = spec.check(body)
        ctx.model = preset or name
        ctx.route = admit_model(ctx.table, ctx.key, name)
        candidates = plan_request(gateway, ctx, request, body)
        sized = raw if preset is None else orjson.dumps(body)
        await admit(gateway, ctx, estimate(sized, body), [c.route for c in candidates])
        call = _Request(spec, body, gateway, _forwarded(request, spec))
        return meter.reply_first(await _answer(request, ctx, call, candidates))


def handler(spec: IngressSpec) -> Callable[[Request], Awaitable[Answer]]:
    async def serve(request: Request) -> Answer:
        return await handle(request, spec)

    serve.__name__ = spec.name
    return serve
