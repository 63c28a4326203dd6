"""Adapter for the native Anthropic Messages API (x-api-key, anthropic-version)."""

from __future__ import annotations

from routerd.config.model import ProviderConfig
from routerd.providers.base import JsonAdapter

DEFAULT_VERSION = "2023-06-01"


class AnthropicAdapter(JsonAdapter):
    wire_format = "anthropic_messages"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": config.api_version or DEFAULT_VERSION,
            **dict(config.headers),
        }
        if config.api_key:
            headers["x-api-key"] = config.api_key
        base = config.base_url
        super().__init__(
            f"{base}/messages",
            headers,
            config.timeouts,
            count_tokens_url=f"{base}/messages/count_tokens",
        )
