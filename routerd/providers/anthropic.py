"""Adapter for the native Anthropic Messages API (x-api-key, anthropic-version)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from routerd.config.model import ProviderConfig
from routerd.providers.base import UpstreamError, UpstreamRequest, classify_status

DEFAULT_VERSION = "2023-06-01"


class AnthropicAdapter:
    wire_format = "anthropic_messages"

    def __init__(self, config: ProviderConfig) -> None:
        self._url = f"{config.base_url}/messages"
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": config.api_version or DEFAULT_VERSION,
            **dict(config.headers),
        }
        if config.api_key:
            headers["x-api-key"] = config.api_key
        self._headers = headers
        self._timeouts = config.timeouts

    def build_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        stream: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest:
        body["model"] = upstream_model
        headers = {**client_headers, **self._headers} if client_headers else self._headers
        return UpstreamRequest(
            method="POST",
            url=self._url,
            headers=headers,
            body=orjson.dumps(body),
            stream=stream,
            timeouts=self._timeouts,
        )

    def classify_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return classify_status(status, body, headers)
