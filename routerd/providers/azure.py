"""Adapter for Azure OpenAI: OpenAI's wire format at a per-deployment URL with `api-key`.

The catalog deployment's `model` is the Azure deployment name; `api_version` comes from the
provider entry (default below). URLs: `{base_url}/openai/deployments/{deployment}/...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import orjson

from routerd.config.model import ProviderConfig
from routerd.providers.base import JsonAdapter, UpstreamRequest

DEFAULT_API_VERSION = "2024-10-21"


class AzureAdapter(JsonAdapter):
    wire_format = "openai_chat"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if config.api_key:
            headers["api-key"] = config.api_key
        super().__init__(f"{config.base_url}/openai/deployments", headers, config.timeouts)
        self._query = f"api-version={quote(config.api_version or DEFAULT_API_VERSION)}"

    def _url_for(self, deployment: str, operation: str) -> str:
        return f"{self._url}/{quote(deployment, safe='')}/{operation}?{self._query}"

    def build_request(
        self,
        upstream_model: str,
        body: dict[str, object],
        stream: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest:
        body["model"] = upstream_model
        url = self._url_for(upstream_model, "chat/completions")
        return UpstreamRequest(
            "POST", url, self._headers, orjson.dumps(body), stream, self._timeouts
        )

    def build_embeddings_request(
        self, upstream_model: str, body: dict[str, object]
    ) -> UpstreamRequest | None:
        body["model"] = upstream_model
        url = self._url_for(upstream_model, "embeddings")
        return UpstreamRequest(
            "POST", url, self._headers, orjson.dumps(body), False, self._timeouts
        )
