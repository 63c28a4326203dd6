"""Codec registry: for each wire format, the pure functions that translate it.

`WIRE` maps an upstream wire format to how routerd encodes a canonical request for it and
decodes its answers (JSON and stream); `INGRESS` maps a client-facing format to how routerd
decodes the client's request and encodes answers back. This is the one place a format name is
looked up; handlers and adapters never compare format strings elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from routerd.formats import anthropic_messages, gemini, openai_chat, openai_responses
from routerd.formats.anthropic_stream import MessagesEventDecoder, MessagesEventEncoder
from routerd.formats.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    StreamError,
    StreamEvent,
    ToolNameMap,
    Usage,
)
from routerd.formats.gemini_stream import GeminiStreamDecoder
from routerd.formats.openai_chat_stream import ChatChunkDecoder, ChatChunkEncoder
from routerd.formats.openai_responses_stream import ResponsesEventEncoder
from routerd.formats.sse import encode_frame


class StreamDecoder(Protocol):
    def feed(self, data: Mapping[str, Any]) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


@dataclass(frozen=True, slots=True)
class WireCodec:
    """How to talk to an upstream that speaks this wire format."""

    name: str
    encode_request: Callable[
        [CanonicalRequest, ToolNameMap, int | None], tuple[dict[str, Any], list[str]]
    ]
    decode_response: Callable[[Mapping[str, Any], ToolNameMap], CanonicalResponse]
    stream_decoder: Callable[[ToolNameMap], StreamDecoder]
    decode_usage: Callable[[Mapping[str, Any] | None], Usage]


class StreamEncoder(Protocol):
    def frames(self, event: StreamEvent) -> bytes: ...

    def end(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class IngressCodec:
    """How to read a client's request in this format and answer it in the same format."""

    name: str
    decode_request: Callable[[Mapping[str, Any]], CanonicalRequest]
    encode_response: Callable[[CanonicalResponse, str], dict[str, Any]]
    stream_encoder: Callable[[str, bool], StreamEncoder]


def _openai_encode(
    req: CanonicalRequest, names: ToolNameMap, default_max: int | None
) -> tuple[dict[str, Any], list[str]]:
    return openai_chat.encode_request(req, names=names)


def _anthropic_encode(
    req: CanonicalRequest, names: ToolNameMap, default_max: int | None
) -> tuple[dict[str, Any], list[str]]:
    if default_max is None:
        return anthropic_messages.encode_request(req, names=names)
    return anthropic_messages.encode_request(req, names=names, default_max_tokens=default_max)


class _ChatStreamEncoder:
    def __init__(self, model: str, include_usage: bool) -> None:
        self._encoder = ChatChunkEncoder(model, include_usage=include_usage)

    def frames(self, event: StreamEvent) -> bytes:
        return self._encoder.frames(event)

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"


class _MessagesStreamEncoder:
    def __init__(self, model: str, include_usage: bool) -> None:
        self._encoder = MessagesEventEncoder(model)

    def frames(self, event: StreamEvent) -> bytes:
        return self._encoder.frames(event)

    def end(self) -> bytes:
        return b""


class _AnthropicStreamDecoder:
    """MessagesEventDecoder plus an end-of-stream check: no `message_stop` means cut short."""

    def __init__(self, names: ToolNameMap) -> None:
        self._decoder = MessagesEventDecoder(names)
        self._stopped = False

    def feed(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        if data.get("type") in ("message_stop", "error"):
            self._stopped = True
        return self._decoder.feed(data)

    def finish(self) -> list[StreamEvent]:
        if self._stopped:
            return []
        self._stopped = True
        return [StreamError(type="api_error", message="the upstream stream ended early")]


class _ResponsesStreamEncoder:
    def __init__(self, model: str, include_usage: bool) -> None:
        self._encoder = ResponsesEventEncoder(model)

    def frames(self, event: StreamEvent) -> bytes:
        return self._encoder.frames(event)

    def end(self) -> bytes:
        return b"".join(encode_frame(data, name) for name, data in self._encoder.end())


def _anthropic_usage(raw: Mapping[str, Any] | None) -> Usage:
    return anthropic_messages.decode_usage(raw)


WIRE: dict[str, WireCodec] = {
    "openai_chat": WireCodec(
        "openai_chat",
        _openai_encode,
        openai_chat.decode_response,
        ChatChunkDecoder,
        openai_chat.decode_usage,
    ),
    "anthropic_messages": WireCodec(
        "anthropic_messages",
        _anthropic_encode,
        anthropic_messages.decode_response,
        _AnthropicStreamDecoder,
        _anthropic_usage,
    ),
    "gemini": WireCodec(
        "gemini",
        gemini.encode_request,
        gemini.decode_response,
        GeminiStreamDecoder,
        gemini.decode_usage,
    ),
}

INGRESS: dict[str, IngressCodec] = {
    "chat_completions": IngressCodec(
        "openai_chat",
        openai_chat.decode_request,
        openai_chat.encode_response,
        _ChatStreamEncoder,
    ),
    "messages": IngressCodec(
        "anthropic_messages",
        anthropic_messages.decode_request,
        anthropic_messages.encode_response,
        _MessagesStreamEncoder,
    ),
    "responses": IngressCodec(
        "openai_responses",
        openai_responses.decode_request,
        openai_responses.encode_response,
        _ResponsesStreamEncoder,
    ),
}


def sse_json(frame: bytes) -> dict[str, Any] | None:
    """The JSON payload of one SSE frame's `data:` line(s); None for `[DONE]` or no data."""
    lines = [line[5:].strip() for line in frame.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    payload = b"\n".join(lines)
    if payload == b"[DONE]":
        return None
    data = orjson.loads(payload)
    return data if isinstance(data, dict) else None
