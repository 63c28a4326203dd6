"""Adapter for OpenAI and every OpenAI-compatible service (Groq, Mistral, vLLM, Ollama, ...)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from routerd.config.model import ProviderConfig
from routerd.providers.base import UpstreamError, UpstreamRequest, classify_status


class OpenAIAdapter:
    wire_format = "openai_chat"

    def __init__(self, config: ProviderConfig) -> None:
        self._url = f"{config.base_url}/chat/completions"
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
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
        return UpstreamRequest(
            method="POST",
            url=self._url,
            headers=self._headers,
            body=orjson.dumps(body),
            stream=stream,
            timeouts=self._timeouts,
        )

    def classify_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return classify_status(status, body, headers)
