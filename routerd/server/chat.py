"""`POST /v1/chat/completions`: the OpenAI Chat Completions ingress.

Passthrough (only `model` rewritten, unknown fields survive) to OpenAI-wire upstreams; translated
through the canonical form to the others. routerd checks only the fields it needs here.
"""

from __future__ import annotations

from typing import Any

from routerd.errors import ErrorCode, RouterdError
from routerd.server.ingress import IngressSpec, handler


def check_chat_body(body: dict[str, Any]) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterdError(ErrorCode.invalid_request, "'model' is required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RouterdError(
            ErrorCode.invalid_request,
            "'messages' is required and must be a non-empty array",
            param="messages",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RouterdError(ErrorCode.invalid_request, "'stream' must be a boolean", param="stream")
    return model, stream


CHAT = IngressSpec("chat_completions", check_chat_body)
chat_completions = handler(CHAT)
