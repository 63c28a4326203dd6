"""Assemble canonical stream events into a `CanonicalResponse`.

Used where a whole answer is needed from a stream (a non-streaming client served by a streaming
upstream, a response cache, tests comparing streamed and non-streamed answers). Pure and
incremental: `add(event)` per event, `response()` at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routerd.formats.canonical import (
    BlockKind,
    BlockStart,
    CanonicalResponse,
    MessageDelta,
    MessageStart,
    Part,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    Usage,
)


@dataclass(slots=True)
class _Block:
    start: BlockStart
    chunks: list[str] = field(default_factory=list)
    signature: str | None = None

    @property
    def kind(self) -> BlockKind:
        return self.start.kind


class StreamAccumulator:
    """Collects canonical events; `response()` returns the assembled answer."""

    def __init__(self, source_format: str = "") -> None:
        self._source = source_format
        self._id = ""
        self._model = ""
        self._blocks: dict[int, _Block] = {}
        self._delta: MessageDelta | None = None
        self._usage: Usage | None = None
        self.error: StreamError | None = None

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, MessageStart):
            self._id, self._model, self._usage = event.id, event.model, event.usage
        elif isinstance(event, BlockStart):
            self._blocks[event.index] = _Block(event)
        elif isinstance(event, (TextDelta, ToolArgsDelta, ThinkingDelta)):
            self._add_delta(event)
        elif isinstance(event, MessageDelta):
            self._delta = event
            self._usage = event.usage or self._usage
        elif isinstance(event, StreamError):
            self.error = event

    def _add_delta(self, event: TextDelta | ToolArgsDelta | ThinkingDelta) -> None:
        block = self._blocks.get(event.index)
        if block is None:
            return
        if isinstance(event, TextDelta):
            block.chunks.append(event.text)
        elif isinstance(event, ToolArgsDelta):
            block.chunks.append(event.partial_json)
        else:
            block.chunks.append(event.text)
            if event.signature is not None:
                block.signature = event.signature

    def response(self) -> CanonicalResponse:
        delta = self._delta
        stop = (
            delta.stop_reason if delta else StopReason.error if self.error else StopReason.end_turn
        )
        return CanonicalResponse(
            id=self._id,
            model=self._model,
            content=tuple(_part(self._blocks[i]) for i in sorted(self._blocks)),
            stop_reason=stop,
            usage=self._usage or Usage(),
            stop_sequence=delta.stop_sequence if delta else None,
            raw_stop_reason=delta.raw_stop_reason if delta else None,
            source_format=self._source,
        )


def _part(block: _Block) -> Part:
    text = "".join(block.chunks)
    start = block.start
    if block.kind == "text":
        return TextPart(text=text)
    if block.kind == "tool_call":
        return ToolCallPart(
            id=start.tool_call_id or "",
            name=start.tool_name or "",
            arguments=text or ("{}" if start.tool_kind == "function" else ""),
            kind=start.tool_kind,
        )
    if start.redacted_data is not None:
        return ThinkingPart(data=start.redacted_data, redacted=True, origin=start.origin)
    return ThinkingPart(text=text, signature=block.signature, origin=start.origin)
