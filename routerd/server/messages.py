"""`POST /v1/messages`: the Anthropic Messages ingress.

Passthrough to Anthropic upstreams (body and `anthropic-beta` survive; only `model` rewritten);
translated through the canonical form to the others, with `max_tokens` clamped to the catalog's
`max_output_tokens`. Errors use Anthropic's envelope (the middleware picks it by path).
"""

from __future__ import annotations

from typing import Any

from routerd.errors import ErrorCode, RouterdError
from routerd.server.ingress import IngressSpec, handler


def check_messages_body(body: dict[str, Any]) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "model: Field required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RouterdError(
            ErrorCode.invalid_request, "messages: a non-empty array is required", param="messages"
        )
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RouterdError(
            ErrorCode.invalid_request,
            "max_tokens: a positive integer is required",
            param="max_tokens",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RouterdError(ErrorCode.invalid_request, "stream: must be a boolean", param="stream")
    return model, stream


MESSAGES = IngressSpec("messages", check_messages_body, forward_headers=("anthropic-beta",))
messages = handler(MESSAGES)
