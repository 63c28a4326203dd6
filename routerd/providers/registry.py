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
from routerd.providers.openai import OpenAIAdapter


@dataclass(frozen=True, slots=True)
class ProviderKind:
    adapter: Callable[[ProviderConfig], Adapter]
    transport: Callable[[ProviderConfig], Transport]


def _echo_transport(_: ProviderConfig) -> Transport:
    return EchoTransport()


KINDS: dict[ProviderType, ProviderKind] = {
    "openai": ProviderKind(OpenAIAdapter, AiohttpTransport),
    "anthropic": ProviderKind(AnthropicAdapter, AiohttpTransport),
    "azure": ProviderKind(AzureAdapter, AiohttpTransport),
    "gemini": ProviderKind(GeminiAdapter, AiohttpTransport),
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
