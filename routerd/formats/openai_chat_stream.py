"""OpenAI Chat Completions stream codecs: `chat.completion.chunk` dicts <-> canonical events.

`ChatChunkDecoder` turns an upstream's chunks (already parsed from SSE `data:` lines) into
canonical events incrementally: content, `reasoning`/`reasoning_content` and refusal deltas, tool
calls assembled by their `index`, `finish_reason`, and the final usage chunk (`choices: []`),
which arrives after the finish chunk; call `finish()` on `[DONE]` or end of stream.
`ChatChunkEncoder` turns canonical events into chunk dicts for a client; the caller frames each
as `data: ...\\n\\n` and ends with `data: [DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

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
    ToolKind,
    ToolNameMap,
    Usage,
)
from routerd.formats.openai_chat import FINISH_TO_STOP, STOP_TO_FINISH, decode_usage, encode_usage
from routerd.formats.openai_chat_parts import REASONING_FIELD_OUT, REASONING_FIELDS
from routerd.formats.sse import encode_frame
from routerd.formats.stream_blocks import BlockTracker

_PLAIN = frozenset(("content", "role"))  # delta keys of a text-only chunk

# encode_frame of `ChatChunkEncoder._chunk({"content": text})`, as bytes (see `frames`): the
# head (id, created, model) is fixed for a stream, the text and the usage tail per chunk
_TEXT_HEAD = b'data: {"id":%b,"object":"chat.completion.chunk","created":%d,"model":%b,"choices":'
_TEXT_BODY = b'[{"index":0,"delta":{"content":%b},"logprobs":null,"finish_reason":null}]%b}\n\n'


class ChatChunkDecoder(BlockTracker):
    """Upstream `chat.completion.chunk` dicts -> canonical stream events (first choice only)."""

    def __init__(self, names: ToolNameMap | None = None) -> None:
        super().__init__()
        self._names = names
        self._started = False
        self._done = False
        self._tools: dict[int, int] = {}  # upstream tool_call index -> canonical block index
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if self._done:
            return []
        out: list[StreamEvent] = []
        error = chunk.get("error")
        if error is not None and isinstance(error, Mapping):
            self._done = True
            kind = error.get("type") or error.get("code") or "api_error"
            return [StreamError(type=str(kind), message=str(error.get("message", "")))]
        if not self._started:
            self._started = True
            out.append(MessageStart(id=chunk.get("id") or "", model=chunk.get("model") or ""))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                self._choice(choice, out)
        if chunk.get("usage"):
            self._usage = decode_usage(chunk["usage"])
        if self._finish is not None and self._usage is not None:
            out.extend(self._end())
        return out

    def finish(self) -> list[StreamEvent]:
        """End of stream (`[DONE]` or EOF): close what is open and emit the final events."""
        if self._done:
            return []
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(MessageStart(id="", model=""))
        out.extend(self._end())
        return out

    def _end(self) -> list[StreamEvent]:
        self._done = True
        out = self._close()
        finish = self._finish or "stop"
        stop = FINISH_TO_STOP.get(finish, StopReason.end_turn)
        out.append(MessageDelta(stop_reason=stop, usage=self._usage, raw_stop_reason=finish))
        out.append(MessageStop())
        return out

    def _choice(self, choice: Mapping[str, Any], out: list[StreamEvent]) -> None:
        delta = choice.get("delta") or {}
        if delta.keys() <= _PLAIN:  # the usual chunk: text only, no loops over absent fields
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.extend(self._ensure("text"))
                out.append(TextDelta(index=self._next - 1, text=text))
        else:
            self._fields(delta, out)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            out.extend(self._close())

    def _fields(self, delta: Mapping[str, Any], out: list[StreamEvent]) -> None:
        for key in REASONING_FIELDS:
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.extend(self._ensure("thinking"))
                out.append(ThinkingDelta(index=self._next - 1, text=text))
                break
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.extend(self._ensure("text"))
                out.append(TextDelta(index=self._next - 1, text=text))
        for tc in delta.get("tool_calls") or ():
            self._tool_delta(tc, out)

    def _tool_delta(self, tc: Mapping[str, Any], out: list[StreamEvent]) -> None:
        position = tc.get("index")
        if not isinstance(position, int):  # some compatible servers omit the index
            same = self._tools and not tc.get("id")
            position = max(self._tools) if same else len(self._tools)
        kind: ToolKind = "custom" if tc.get("type") == "custom" or "custom" in tc else "function"
        body = tc.get(kind) or {}
        if position not in self._tools:
            out.extend(self._close())
            name = body.get("name") or ""
            if self._names is not None:
                name = self._names.from_wire(name)
            index = self._open_block("tool_call")
            self._tools[position] = index
            out.append(
                BlockStart(
                    index=index,
                    kind="tool_call",
                    tool_call_id=tc.get("id") or "",
                    tool_name=name,
                    tool_kind=kind,
                )
            )
        args = body.get("input" if kind == "custom" else "arguments")
        if args:
            out.append(ToolArgsDelta(index=self._tools[position], partial_json=args))

    def _ensure(self, kind: BlockKind) -> list[StreamEvent]:
        if self._open is not None and self._open[0] == kind:
            return []
        out = self._close()
        index = self._open_block(kind)
        out.append(BlockStart(index=index, kind=kind))
        return out


class ChatChunkEncoder:
    """Canonical stream events -> `chat.completion.chunk` dicts for a client.

    With `include_usage` every chunk carries `"usage": null` and a last chunk with
    `"choices": []` carries the usage, as OpenAI does for `stream_options.include_usage`.
    """

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        created: int | None = None,
        response_id: str | None = None,
        reasoning_field: str = REASONING_FIELD_OUT,
    ) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._id = response_id
        self._reasoning_field = reasoning_field
        self._tools: dict[int, int] = {}  # canonical block index -> tool_calls[].index
        self._text_head: bytes | None = None  # `_TEXT_HEAD` filled in, until the id changes
        self._usage_tail = b',"usage":null' if include_usage else b""

    def frames(self, event: StreamEvent) -> bytes:
        """The SSE bytes of `encode(event)`; a text delta (most of a stream's events) from a
        byte template: the same bytes as its chunk dict, without building it."""
        if type(event) is TextDelta:
            head = self._text_head
            if head is None:
                ident, model = orjson.dumps(self._id or ""), orjson.dumps(self._model)
                head = self._text_head = _TEXT_HEAD % (ident, self._created, model)
            return head + _TEXT_BODY % (orjson.dumps(event.text), self._usage_tail)
        return b"".join([encode_frame(chunk) for chunk in self.encode(event)])

    def encode(self, event: StreamEvent) -> list[dict[str, Any]]:
        if isinstance(event, MessageStart):
            if self._id is None:
                self._id = event.id
                self._text_head = None
            return [self._chunk({"role": "assistant", "content": ""})]
        if isinstance(event, TextDelta):
            return [self._chunk({"content": event.text})]
        if isinstance(event, ThinkingDelta):
            return [self._chunk({self._reasoning_field: event.text})] if event.text else []
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, ToolArgsDelta):
            call = {"index": self._tools.get(event.index, 0)}
            call_args: dict[str, Any] = {**call, "function": {"arguments": event.partial_json}}
            return [self._chunk({"tool_calls": [call_args]})]
        if isinstance(event, MessageDelta):
            return self._message_delta(event)
        if isinstance(event, StreamError):
            error = {"message": event.message, "type": event.type, "param": None, "code": None}
            return [{"error": error}]
        return []  # BlockStop, MessageStop: nothing on this wire

    def _block_start(self, event: BlockStart) -> list[dict[str, Any]]:
        if event.kind != "tool_call":
            return []
        position = len(self._tools)
        self._tools[event.index] = position
        call = {
            "index": position,
            "id": event.tool_call_id or "",
            "type": "function",
            "function": {"name": event.tool_name or "", "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, event: MessageDelta) -> list[dict[str, Any]]:
        finish = STOP_TO_FINISH[event.stop_reason]
        out = [self._chunk({}, finish)]
        if self._include_usage:
            usage = encode_usage(event.usage or Usage())
            out.append(self._base(choices=[], usage=usage))
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._base(choices=[choice], usage=None)

    def _base(self, *, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id or "",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return chunk
