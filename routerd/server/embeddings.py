"""`POST /v1/embeddings`: the OpenAI Embeddings ingress, metered on prompt tokens.

Forwarded in OpenAI's wire format (only `model` rewritten, so `dimensions`, `encoding_format` and
`user` survive) to upstreams that serve embeddings: OpenAI-compatible, Azure, echo.
"""

from __future__ import annotations

from typing import Any

import orjson

from routerd.errors import ErrorCode, RouterdError
from routerd.formats.codecs import WIRE
from routerd.routing.presets import expand_preset
from routerd.server.admission import admit, estimate
from routerd.server.auth import admit_model, authenticate
from routerd.server.context import RequestContext, metered
from routerd.server.http import Answer, Request
from routerd.server.pipeline import GATEWAY, Prepared, first_answer, plan_request, read_json
from routerd.server.translate import passthrough_json

INGRESS = "embeddings"


def check_embeddings_body(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "'model' is required", param="model")
    raw = body.get("input")
    valid = (isinstance(raw, str) and raw != "") or (
        isinstance(raw, list) and raw and all(isinstance(x, str | int | list) for x in raw)
    )
    if not valid:
        raise RouterdError(
            ErrorCode.invalid_request,
            "'input' must be a non-empty string or array of strings or token arrays",
            param="input",
        )
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise RouterdError(
            ErrorCode.invalid_request, "'dimensions' must be a positive integer", param="dimensions"
        )
    return model


async def embeddings(request: Request) -> Answer:
    gateway = request.app[GATEWAY]
    ctx = RequestContext(request.request_id, INGRESS, gateway.table)
    async with metered(gateway, ctx) as meter:
        ctx.key = authenticate(request, ctx.table)
        body, raw = await read_json(request)
        body, preset = expand_preset(ctx.table.config.catalog.presets, body, INGRESS)
        name = check_embeddings_body(body)
        ctx.model = preset or name
        ctx.route = admit_model(ctx.table, ctx.key, name)
        candidates = plan_request(gateway, ctx, request, body)
        routes = [c.route for c in candidates]
        sized = raw if preset is None else orjson.dumps(body)
        await admit(gateway, ctx, estimate(sized, body, embeddings=True), routes, True)
        response = await first_answer(
            gateway, ctx, candidates, lambda _: Prepared(dict(body), {}, embeddings=True)
        )
        return meter.reply_first(await passthrough_json(ctx, response, WIRE["openai_chat"]))
