"""Adapter for the native Gemini API (`generateContent` / `streamGenerateContent?alt=sse`).

The model goes in the URL, not the body: `{base_url}/models/{model}:generateContent`, or for a
stream `{base_url}/models/{model}:streamGenerateContent?alt=sse`; `base_url` ends in the API
version (`https://generativelanguage.googleapis.com/v1beta`). The key travels as
`x-goog-api-key`. Errors use Google's envelope `{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import orjson

from routerd.config.model import ProviderConfig
from routerd.errors import ErrorCode
from routerd.providers.base import (
    JsonAdapter,
    UpstreamError,
    UpstreamRequest,
    classify_status,
    upstream_message,
)

# Google RPC statuses that say more than the HTTP status does.
_STATUS_CODES: dict[str, ErrorCode] = {
    "RESOURCE_EXHAUSTED": ErrorCode.provider_rate_limit,
    "UNAVAILABLE": ErrorCode.provider_unavailable,
    "DEADLINE_EXCEEDED": ErrorCode.provider_timeout,
    "UNAUTHENTICATED": ErrorCode.provider_auth,
    "PERMISSION_DENIED": ErrorCode.provider_auth,
}


class GeminiAdapter(JsonAdapter):
    wire_format = "gemini"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if config.api_key:
            headers["x-goog-api-key"] = config.api_key
        super().__init__(f"{config.base_url}/models", headers, config.timeouts)

    def url_for(self, upstream_model: str, stream: bool) -> str:
        model = quote(upstream_model.removeprefix("models/"), safe="-._~")
        if stream:
            return f"{self._url}/{model}:streamGenerateContent?alt=sse"
        return f"{self._url}/{model}:generateContent"

    def build_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        stream: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest:
        body.pop("model", None)
        body.pop("stream", None)
        headers = {**client_headers, **self._headers} if client_headers else self._headers
        url = self.url_for(upstream_model, stream)
        return UpstreamRequest("POST", url, headers, orjson.dumps(body), stream, self._timeouts)

    def classify_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        error = classify_status(status, body, headers)
        code = _STATUS_CODES.get(google_status(body) or "")
        if status == 400:  # Gemini answers a bad key and an oversized prompt with 400
            lowered = upstream_message(body).lower()
            if "api key not valid" in lowered:
                code = ErrorCode.provider_auth
            elif "input token count" in lowered and "exceeds" in lowered:
                code = ErrorCode.context_length_exceeded
            else:
                code = None
        if code is None or code == error.code:
            return error
        return UpstreamError(
            code, error.message, upstream_status=status, retry_after=error.retry_after
        )


def google_status(body: bytes) -> str | None:
    """The `error.status` of a Google error envelope (e.g. `RESOURCE_EXHAUSTED`), if any."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:  # streamed errors may come as a one-element array
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return status if isinstance(status, str) else None
