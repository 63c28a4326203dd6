"""Provider types -> adapter and transport: the one place a provider type is looked up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from routerd.config.model import ProviderConfig, ProviderType
from routerd.providers.anthropic import AnthropicAdapter
from routerd.providers.azure import AzureAdapter
from routerd.providers.base import Adapter, AiohttpTransport, Transport
from routerd.providers.echo import EchoAdapter, EchoTransport
from routerd.providers.gemini import GeminiAdapter
from routerd.providers.http1 import Http1Transport
from routerd.providers.openai import OpenAIAdapter


@dataclass(frozen=True, slots=True)
class ProviderKind:
    adapter: Callable[[ProviderConfig], Adapter]
    transport: Callable[[ProviderConfig], Transport]


def _echo_transport(_: ProviderConfig) -> Transport:
    return EchoTransport()


def _http_transport(config: ProviderConfig) -> Transport:
    """The provider's `transport`: routerd's own HTTP/1.1 client (default) or aiohttp's."""
    if config.transport == "aiohttp":
        return AiohttpTransport(config)
    return Http1Transport(config)


KINDS: dict[ProviderType, ProviderKind] = {
    "openai": ProviderKind(OpenAIAdapter, _http_transport),
    "anthropic": ProviderKind(AnthropicAdapter, _http_transport),
    "azure": ProviderKind(AzureAdapter, _http_transport),
    "gemini": ProviderKind(GeminiAdapter, _http_transport),
    "echo": ProviderKind(EchoAdapter, _echo_transport),
}


@dataclass(slots=True)
class Provider:
    """A live provider: its config, its adapter, and its transport (shared across reloads)."""

    config: ProviderConfig
    adapter: Adapter
    transport: Transport


def unsupported_reason(config: ProviderConfig) -> str | None:
    if config.type not in KINDS:
        return f"provider type {config.type!r} is not supported by this build yet"
    return None


def build_provider(config: ProviderConfig, transport: Transport | None = None) -> Provider:
    kind = KINDS[config.type]
    return Provider(config, kind.adapter(config), transport or kind.transport(config))
