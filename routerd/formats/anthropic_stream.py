"""Anthropic Messages stream codecs: SSE event payloads <-> canonical stream events.

`MessagesEventDecoder` consumes the upstream's event payloads (the parsed `data:` of each SSE
event: message_start, content_block_start/delta/stop with text_delta, input_json_delta,
thinking_delta, signature_delta, message_delta, message_stop, ping, error) incrementally.
Blocks only Anthropic can express (server tool use and results) are skipped, and kept blocks are
renumbered contiguously. `MessagesEventEncoder` turns canonical events back into that exact
sequence as `(event_name, data)` pairs for a client; the caller frames them with
`sse.encode_frame(data, event_name)`, or `frames` gives the SSE bytes at once (a text delta,
most of a stream's events, from a byte template: the same bytes as the dict, without the dicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from routerd.formats.anthropic_blocks import ORIGIN, tool_use_id
from routerd.formats.anthropic_messages import error_body
from routerd.formats.anthropic_response import (
    STOP_FROM_WIRE,
    STOP_TO_WIRE,
    decode_usage,
    encode_usage,
)
from routerd.formats.canonical import (
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolArgsDelta,
    ToolNameMap,
    Usage,
)
from routerd.formats.sse import encode_frame

Frame = tuple[str, dict[str, Any]]

# encode_frame(_frame("content_block_delta", index=i, delta={"type": "text_delta", "text": t}))
_TEXT_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":%b}}\n\n'
)


class MessagesEventDecoder:
    """Upstream Anthropic stream event payloads -> canonical events."""

    def __init__(self, names: ToolNameMap | None = None) -> None:
        self._names = names
        self._blocks: dict[int, int] = {}  # upstream index -> canonical index
        self._custom: dict[int, list[str]] = {}  # canonical index -> buffered partial JSON
        self._usage = Usage()

    def feed(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self._usage = decode_usage(message.get("usage"))
            return [
                MessageStart(
                    id=message.get("id", ""), model=message.get("model", ""), usage=self._usage
                )
            ]
        if kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            index = self._blocks.get(data.get("index", -1))
            return [] if index is None else self._delta(index, data.get("delta") or {})
        if kind == "content_block_stop":
            return self._block_stop(data.get("index", -1))
        if kind == "message_delta":
            return [self._message_delta(data)]
        if kind == "message_stop":
            return [MessageStop()]
        if kind == "error":
            error = data.get("error") or {}
            return [
                StreamError(type=error.get("type", "api_error"), message=error.get("message", ""))
            ]
        return []  # ping and unknown events

    def _block_start(self, upstream: int, block: Mapping[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        index = len(self._blocks)
        if kind == "text":
            self._blocks[upstream] = index
            text = block.get("text") or ""
            start: list[StreamEvent] = [BlockStart(index=index, kind="text")]
            return start + ([TextDelta(index=index, text=text)] if text else [])
        if kind == "thinking":
            self._blocks[upstream] = index
            out: list[StreamEvent] = [BlockStart(index=index, kind="thinking", origin=ORIGIN)]
            if block.get("thinking"):
                out.append(ThinkingDelta(index=index, text=block["thinking"]))
            if block.get("signature"):
                out.append(ThinkingDelta(index=index, signature=block["signature"]))
            return out
        if kind == "redacted_thinking":
            self._blocks[upstream] = index
            data = block.get("data", "")
            return [BlockStart(index=index, kind="thinking", redacted_data=data, origin=ORIGIN)]
        if kind == "tool_use":
            self._blocks[upstream] = index
            return [self._tool_start(index, block)]
        return []

    def _tool_start(self, index: int, block: Mapping[str, Any]) -> BlockStart:
        wire = block.get("name", "")
        name = self._names.from_wire(wire) if self._names is not None else wire
        custom = self._names is not None and self._names.kind(name) == "custom"
        if custom:
            self._custom[index] = []
        return BlockStart(
            index=index,
            kind="tool_call",
            tool_call_id=block.get("id", ""),
            tool_name=name,
            tool_kind="custom" if custom else "function",
        )

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(index=index, text=delta.get("text", ""))]
        if kind == "input_json_delta":
            partial = delta.get("partial_json", "")
            if index in self._custom:
                self._custom[index].append(partial)
                return []
            return [ToolArgsDelta(index=index, partial_json=partial)] if partial else []
        if kind == "thinking_delta":
            return [ThinkingDelta(index=index, text=delta.get("thinking", ""))]
        if kind == "signature_delta":
            return [ThinkingDelta(index=index, signature=delta.get("signature", ""))]
        return []  # citations_delta and future delta types

    def _block_stop(self, upstream: int) -> list[StreamEvent]:
        index = self._blocks.get(upstream)
        if index is None:
            return []
        out: list[StreamEvent] = []
        buffered = self._custom.pop(index, None)
        if buffered is not None:
            out.append(ToolArgsDelta(index=index, partial_json=_custom_input("".join(buffered))))
        out.append(BlockStop(index=index))
        return out

    def _message_delta(self, data: Mapping[str, Any]) -> MessageDelta:
        delta = data.get("delta") or {}
        raw = delta.get("stop_reason") or "end_turn"
        self._usage = decode_usage(data.get("usage"), base=self._usage)
        return MessageDelta(
            stop_reason=STOP_FROM_WIRE.get(raw, StopReason.end_turn),
            usage=self._usage,
            stop_sequence=delta.get("stop_sequence"),
            raw_stop_reason=raw,
        )


class MessagesEventEncoder:
    """Canonical events -> the exact Anthropic event sequence, as `(event_name, data)` pairs."""

    def __init__(self, model: str, *, message_id: str | None = None) -> None:
        self._model = model
        self._id = message_id
        self._blocks: dict[int, int] = {}  # canonical index -> output index
        self._origins: dict[int, str | None] = {}
        self._open: set[int] = set()
        self._next = 0

    def frames(self, event: StreamEvent) -> bytes:
        """The SSE bytes of `encode(event)`."""
        if type(event) is TextDelta:
            index = self._blocks.get(event.index)
            return b"" if index is None else _TEXT_DELTA % (index, orjson.dumps(event.text))
        return b"".join([encode_frame(data, name) for name, data in self.encode(event)])

    def encode(self, event: StreamEvent) -> list[Frame]:
        if isinstance(event, MessageStart):
            return self._message_start(event)
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, (TextDelta, ToolArgsDelta, ThinkingDelta)):
            return self._delta(event)
        if isinstance(event, BlockStop):
            index = self._blocks.get(event.index)
            if index is None or index not in self._open:
                return []
            self._open.discard(index)
            return [_frame("content_block_stop", index=index)]
        if isinstance(event, MessageDelta):
            return self._message_delta(event)
        if isinstance(event, MessageStop):
            return [_frame("message_stop")]
        return [("error", error_body(event.message, event.type))]

    def _message_start(self, event: MessageStart) -> list[Frame]:
        message: dict[str, Any] = {
            "id": self._id or event.id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": encode_usage(event.usage or Usage()),
        }
        return [_frame("message_start", message=message)]

    def _block_start(self, event: BlockStart) -> list[Frame]:
        block = _content_block(event)
        if block is None:
            return []
        index = self._next
        self._next += 1
        self._blocks[event.index] = index
        self._origins[index] = event.origin
        self._open.add(index)
        frames = [_frame("content_block_start", index=index, content_block=block)]
        if index == 0:
            frames.append(_frame("ping"))  # where the API sends its first ping
        return frames

    def _delta(self, event: TextDelta | ToolArgsDelta | ThinkingDelta) -> list[Frame]:
        index = self._blocks.get(event.index)
        if index is None:
            return []
        deltas: list[dict[str, Any]] = []
        if isinstance(event, TextDelta):
            deltas.append({"type": "text_delta", "text": event.text})
        elif isinstance(event, ToolArgsDelta):
            deltas.append({"type": "input_json_delta", "partial_json": event.partial_json})
        else:
            if event.text:
                deltas.append({"type": "thinking_delta", "thinking": event.text})
            if event.signature and self._origins.get(index) == ORIGIN:
                deltas.append({"type": "signature_delta", "signature": event.signature})
        return [_frame("content_block_delta", index=index, delta=d) for d in deltas]

    def _message_delta(self, event: MessageDelta) -> list[Frame]:
        out = [_frame("content_block_stop", index=i) for i in sorted(self._open)]
        self._open.clear()
        stop = STOP_TO_WIRE[event.stop_reason]
        raw = event.raw_stop_reason
        if raw is not None and STOP_FROM_WIRE.get(raw) == event.stop_reason:
            stop = raw
        delta = {
            "stop_reason": stop,
            "stop_sequence": event.stop_sequence if stop == "stop_sequence" else None,
        }
        usage = encode_usage(event.usage or Usage())
        out.append(_frame("message_delta", delta=delta, usage=usage))
        return out


def _content_block(event: BlockStart) -> dict[str, Any] | None:
    if event.kind == "text":
        return {"type": "text", "text": ""}
    if event.kind == "tool_call":
        call_id = tool_use_id(event.tool_call_id or "")
        return {"type": "tool_use", "id": call_id, "name": event.tool_name or "", "input": {}}
    if event.redacted_data is not None:
        if event.origin != ORIGIN:
            return None
        return {"type": "redacted_thinking", "data": event.redacted_data}
    return {"type": "thinking", "thinking": "", "signature": ""}


def _custom_input(raw: str) -> str:
    """The freeform input of a custom tool carried as `{"input": "..."}` (raw text if not)."""
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return raw
    return str(value.get("input", "")) if isinstance(value, dict) else raw


def _frame(name: str, **fields: Any) -> Frame:
    return name, {"type": name, **fields}
