"""The error taxonomy: one stable set of codes, their HTTP statuses, and each ingress's envelope.

Every failure a client can see is a `RouterdError` carrying one `ErrorCode`. The server's error
middleware renders it in the envelope of the ingress format the client spoke (OpenAI
`{"error": {...}}` or Anthropic `{"type": "error", "error": {...}}`); nothing else in the code
builds error bodies.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """Stable error codes (DESIGN.md); `status` gives each one's HTTP status."""

    provider_auth = "provider_auth"
    provider_rate_limit = "provider_rate_limit"
    provider_overloaded = "provider_overloaded"
    context_length_exceeded = "context_length_exceeded"
    content_filter = "content_filter"
    provider_timeout = "provider_timeout"
    provider_unavailable = "provider_unavailable"
    insufficient_credits = "insufficient_credits"
    key_limit_exceeded = "key_limit_exceeded"
    model_not_allowed = "model_not_allowed"
    invalid_api_key = "invalid_api_key"
    rate_limit_exceeded = "rate_limit_exceeded"
    invalid_request = "invalid_request"
    payload_too_large = "payload_too_large"
    model_not_found = "model_not_found"
    not_found = "not_found"
    internal_error = "internal_error"
    permission_denied = "permission_denied"
    conflict = "conflict"
    validation_error = "validation_error"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.provider_auth: 502,
    ErrorCode.provider_rate_limit: 429,
    ErrorCode.provider_overloaded: 529,
    ErrorCode.context_length_exceeded: 400,
    ErrorCode.content_filter: 400,
    ErrorCode.provider_timeout: 504,
    ErrorCode.provider_unavailable: 502,
    ErrorCode.insufficient_credits: 402,
    ErrorCode.key_limit_exceeded: 402,
    ErrorCode.model_not_allowed: 403,
    ErrorCode.invalid_api_key: 401,
    ErrorCode.rate_limit_exceeded: 429,
    ErrorCode.invalid_request: 400,
    ErrorCode.payload_too_large: 413,
    ErrorCode.model_not_found: 404,
    ErrorCode.not_found: 404,
    ErrorCode.internal_error: 500,
    ErrorCode.permission_denied: 403,
    ErrorCode.conflict: 409,
    ErrorCode.validation_error: 422,
}


# OpenAI envelope `type` for each code (the SDK maps statuses to exception classes; `type` is
# informational, `code` carries the stable routerd code).
_OPENAI_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# Anthropic envelope `error.type` values (Anthropic API reference, "Errors").
_ANTHROPIC_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class RouterdError(Exception):
    """A failure with a stable code; the message is safe to show to the client."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.details = details or {}

    @property
    def status(self) -> int:
        return self.code.status


def openai_envelope(err: RouterdError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": err.message,
        "type": _OPENAI_TYPE.get(err.status, "api_error"),
        "param": err.param,
        "code": err.code.name,
        "request_id": request_id,
    }
    body.update(err.details)
    return {"error": body}


def management_envelope(err: RouterdError, request_id: str) -> dict[str, Any]:
    """The management API (`/v1/keys`, `/v1/users`, ...): any-llm-gateway's FastAPI shape,
    `{"detail": ...}` (a list of `{loc, msg, type}` for 422, else the message), next to the
    OpenAI-style `error` object with the stable code."""
    body = openai_envelope(err, request_id)
    detail = body["error"].pop("detail", None)
    return {"detail": detail if detail is not None else err.message, **body}


def anthropic_envelope(err: RouterdError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": _ANTHROPIC_TYPE.get(err.status, "api_error"),
        "message": err.message,
        "code": err.code.name,
    }
    body.update(err.details)
    return {"type": "error", "error": body, "request_id": request_id}
