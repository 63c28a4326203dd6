"""Adapter for OpenAI and every OpenAI-compatible service (Groq, Mistral, vLLM, Ollama, ...)."""

from __future__ import annotations

from routerd.config.model import ProviderConfig
from routerd.providers.base import JsonAdapter


class OpenAIAdapter(JsonAdapter):
    wire_format = "openai_chat"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        base = config.base_url
        super().__init__(
            f"{base}/chat/completions",
            headers,
            config.timeouts,
            embeddings_url=f"{base}/embeddings",
        )
