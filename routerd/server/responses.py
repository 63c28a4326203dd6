"""`POST /v1/responses`: the OpenAI Responses ingress, stateless.

Always translated through the canonical form (no upstream type speaks Responses yet), answered
as a `response` object or the semantic SSE protocol ending in `response.completed` with the id
and full usage, which Codex CLI requires. `previous_response_id` is refused: routerd stores
nothing, so clients must send the whole conversation (Codex does, with `store: false`).
"""

from __future__ import annotations

from typing import Any

from routerd.errors import ErrorCode, RouterdError
from routerd.server.ingress import IngressSpec, handler


def check_responses_body(body: dict[str, Any]) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "'model' is required", param="model")
    if body.get("previous_response_id") is not None:
        raise RouterdError(
            ErrorCode.invalid_request,
            "previous_response_id is not supported: routerd stores no responses; "
            "send the full input (store: false)",
            param="previous_response_id",
        )
    raw = body.get("input")
    if not (isinstance(raw, str) and raw) and not (isinstance(raw, list) and raw):
        raise RouterdError(
            ErrorCode.invalid_request,
            "'input' is required: a string or a non-empty array of items",
            param="input",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RouterdError(ErrorCode.invalid_request, "'stream' must be a boolean", param="stream")
    return model, stream


RESPONSES = IngressSpec("responses", check_responses_body)
responses = handler(RESPONSES)
