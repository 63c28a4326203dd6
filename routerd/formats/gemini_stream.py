"""Gemini `streamGenerateContent?alt=sse` decoder: response chunks -> canonical stream events.

Each SSE `data:` payload is a whole `GenerateContentResponse` carrying the next parts of the first
candidate: text pieces, thought pieces (`thought: true`) and complete `functionCall`s (Gemini
never splits a call's arguments). `usageMetadata` is cumulative and the chunk with `finishReason`
ends the answer. A stream that ends without a `finishReason` was cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routerd.formats.canonical import (
    BlockKind,
    BlockStart,
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
from routerd.formats.gemini import (
    ORIGIN,
    SIGNATURE,
    call_id_prefix,
    decode_call,
    decode_usage,
    stop_reason,
)
from routerd.formats.stream_blocks import BlockTracker


class GeminiStreamDecoder(BlockTracker):
    """Upstream `GenerateContentResponse` chunks -> canonical stream events."""

    def __init__(self, names: ToolNameMap | None = None) -> None:
        super().__init__()
        self._names = names
        self._started = False
        self._done = False
        self._prefix = ""
        self._calls = 0
        self._usage: Usage | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if self._done:
            return []
        error = chunk.get("error")
        if isinstance(error, Mapping):
            self._done = True
            kind = error.get("status") or "api_error"
            return [StreamError(type=str(kind), message=str(error.get("message", "")))]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._prefix = call_id_prefix(chunk)
            out.append(
                MessageStart(
                    id=chunk.get("responseId") or "", model=chunk.get("modelVersion") or ""
                )
            )
        if chunk.get("usageMetadata"):
            self._usage = decode_usage(chunk["usageMetadata"])
        candidates = chunk.get("candidates") or []
        if not candidates:
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                out.extend(self._end(str(blocked), StopReason.content_filter))
            return out
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            self._part(part, out)
        finish = candidate.get("finishReason")
        if finish:
            out.extend(self._end(str(finish)))
        return out

    def finish(self) -> list[StreamEvent]:
        """End of stream: without a `finishReason` the upstream stopped early."""
        if self._done:
            return []
        self._done = True
        out: list[StreamEvent] = []
        if not self._started:
            out.append(MessageStart(id="", model=""))
        out.extend(self._close())
        out.append(StreamError(type="api_error", message="the upstream stream ended early"))
        return out

    def _part(self, part: Mapping[str, Any], out: list[StreamEvent]) -> None:
        if "functionCall" in part:
            out.extend(self._close())
            call_id = f"{self._prefix}_{self._calls}"
            self._calls += 1
            call = decode_call(part["functionCall"], call_id, self._names, part.get(SIGNATURE))
            index = self._open_block("tool_call")
            out.append(
                BlockStart(
                    index=index,
                    kind="tool_call",
                    tool_call_id=call.id,
                    tool_name=call.name,
                    tool_kind=call.kind,
                )
            )
            out.append(ToolArgsDelta(index=index, partial_json=call.arguments))
            out.extend(self._close())
        elif part.get("thought"):
            out.extend(self._ensure("thinking"))
            if part.get("text"):
                out.append(ThinkingDelta(index=self._next - 1, text=part["text"]))
            if isinstance(part.get(SIGNATURE), str):
                out.append(ThinkingDelta(index=self._next - 1, signature=part[SIGNATURE]))
        elif isinstance(part.get("text"), str) and part["text"]:
            out.extend(self._ensure("text"))
            out.append(TextDelta(index=self._next - 1, text=part["text"]))

    def _end(self, finish: str, stop: StopReason | None = None) -> list[StreamEvent]:
        self._done = True
        out = self._close()
        stop = stop or stop_reason(finish, self._calls > 0)
        out.append(MessageDelta(stop_reason=stop, usage=self._usage, raw_stop_reason=finish))
        out.append(MessageStop())
        return out

    def _ensure(self, kind: BlockKind) -> list[StreamEvent]:
        if self._open is not None and self._open[0] == kind:
            return []
        out = self._close()
        index = self._open_block(kind)
        origin = ORIGIN if kind == "thinking" else None
        out.append(BlockStart(index=index, kind=kind, origin=origin))
        return out
