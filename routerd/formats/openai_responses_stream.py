"""OpenAI Responses stream encoder: canonical events -> the semantic SSE protocol.

`ResponsesEventEncoder` turns canonical stream events into `(event name, data)` pairs for a
client: `response.created` and `response.in_progress`, then for each content block
`response.output_item.added`, its deltas (`response.output_text.delta`,
`response.function_call_arguments.delta`, `response.custom_tool_call_input.delta`,
`response.reasoning_summary_text.delta`), the matching `.done` events and
`response.output_item.done`, and finally `response.completed` (or `response.incomplete`) with
the full response object, its id and usage; Codex fails without them. An error becomes
`response.failed`. Every event carries an increasing `sequence_number`; the stream has no
`[DONE]` terminator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

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
    Usage,
)
from routerd.formats.openai_responses import (
    FORMAT,
    item_id,
    message_item,
    output_text,
    reasoning_item,
    response_id,
    response_object,
    tool_call_item,
)
from routerd.formats.sse import encode_frame

Frame = tuple[str, dict[str, Any]]

# encode_frame of `_item_frame("response.output_text.delta", ...)`, as bytes (see `frames`)
_TEXT_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":%d,"item_id":%b,"output_index":%d,"content_index":0,"delta":%b,'
    b'"logprobs":[]}\n\n'
)

_ERROR_CODES = {
    "rate_limit_error": "rate_limit_exceeded",
    "invalid_request_error": "invalid_prompt",
}


@dataclass(slots=True)
class _Block:
    """An output item being streamed."""

    output_index: int
    item_id: str
    kind: str
    call_id: str = ""
    name: str = ""
    tool_kind: str = "function"
    encrypted: str | None = None
    text: list[str] = field(default_factory=list)
    summary_open: bool = False


class ResponsesEventEncoder:
    """Canonical stream events -> Responses SSE `(event, data)` pairs for a client."""

    def __init__(
        self, model: str, *, created: int | None = None, response_id: str | None = None
    ) -> None:
        self._model = model
        self._created = created if created is not None else int(time.time())
        self._id = response_id
        self._seq = 0
        self._started = False
        self._finished = False
        self._blocks: dict[int, _Block] = {}
        self._done: list[tuple[int, dict[str, Any]]] = []  # (output_index, finished item)
        self._stop = StopReason.end_turn
        self._usage: Usage | None = None

    def frames(self, event: StreamEvent) -> bytes:
        """The SSE bytes of `encode(event)`; a text delta (most of a stream's events) from a
        byte template: the same bytes as its dict, without building it."""
        if type(event) is TextDelta and self._started and not self._finished:
            block = self._blocks.get(event.index)
            if block is None:
                return b""
            block.text.append(event.text)
            seq, self._seq = self._seq, self._seq + 1
            item_id, text = orjson.dumps(block.item_id), orjson.dumps(event.text)
            return _TEXT_DELTA % (seq, item_id, block.output_index, text)
        return b"".join([encode_frame(data, name) for name, data in self.encode(event)])

    def encode(self, event: StreamEvent) -> list[Frame]:
        if self._finished:
            return []
        out = self._start(event.id if isinstance(event, MessageStart) else "")
        if isinstance(event, BlockStart):
            out.extend(self._block_start(event))
        elif isinstance(event, TextDelta | ToolArgsDelta | ThinkingDelta):
            out.extend(self._delta(event))
        elif isinstance(event, BlockStop):
            out.extend(self._block_stop(event.index))
        elif isinstance(event, MessageDelta):
            self._stop = event.stop_reason
            if event.usage is not None:
                self._usage = event.usage
        elif isinstance(event, MessageStop):
            out.extend(self._complete())
        elif isinstance(event, StreamError):
            out.extend(self._fail(event))
        return out

    def end(self) -> list[Frame]:
        """Nothing follows the final event on this wire."""
        return []

    # -- helpers ------------------------------------------------------------------------------

    def _frame(self, name: str, **data: Any) -> Frame:
        frame = (name, {"type": name, "sequence_number": self._seq, **data})
        self._seq += 1
        return frame

    def _response(self, status: str, **kwargs: Any) -> dict[str, Any]:
        rid = self._id or response_id("")
        return response_object(rid, self._model, self._created, status=status, **kwargs)

    def _start(self, upstream_id: str) -> list[Frame]:
        if self._started:
            return []
        self._started = True
        if self._id is None:
            self._id = response_id(upstream_id)
        return [
            self._frame("response.created", response=self._response("in_progress", output=[])),
            self._frame("response.in_progress", response=self._response("in_progress", output=[])),
        ]

    def _item_frame(self, name: str, block: _Block, **data: Any) -> Frame:
        return self._frame(name, item_id=block.item_id, output_index=block.output_index, **data)

    def _block_start(self, event: BlockStart) -> list[Frame]:
        out = self._block_stop(event.index)  # a reused index closes the previous block
        index = len(self._done) + len(self._blocks)
        prefix = {"text": "msg", "thinking": "rs"}.get(event.kind, "fc")
        block = _Block(index, item_id(prefix, self._id or "", index), event.kind)
        self._blocks[event.index] = block
        if event.kind == "tool_call":
            block.call_id = event.tool_call_id or ""
            block.name = event.tool_name or ""
            block.tool_kind = event.tool_kind
        if event.redacted_data is not None and event.origin == FORMAT:
            block.encrypted = event.redacted_data
        out.append(
            self._frame(
                "response.output_item.added", output_index=index, item=_item(block, "in_progress")
            )
        )
        if event.kind == "text":
            part = output_text("")
            out.append(
                self._item_frame("response.content_part.added", block, content_index=0, part=part)
            )
        return out

    def _delta(self, event: TextDelta | ToolArgsDelta | ThinkingDelta) -> list[Frame]:
        block = self._blocks.get(event.index)
        if block is None:
            return []
        if isinstance(event, TextDelta):
            block.text.append(event.text)
            return [
                self._item_frame(
                    "response.output_text.delta",
                    block,
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
            ]
        if isinstance(event, ToolArgsDelta):
            block.text.append(event.partial_json)
            name = (
                "response.custom_tool_call_input.delta"
                if block.tool_kind == "custom"
                else "response.function_call_arguments.delta"
            )
            return [self._item_frame(name, block, delta=event.partial_json)]
        if not event.text:
            return []
        out: list[Frame] = []
        if not block.summary_open:
            block.summary_open = True
            part = {"type": "summary_text", "text": ""}
            out.append(
                self._item_frame(
                    "response.reasoning_summary_part.added", block, summary_index=0, part=part
                )
            )
        block.text.append(event.text)
        out.append(
            self._item_frame(
                "response.reasoning_summary_text.delta", block, summary_index=0, delta=event.text
            )
        )
        return out

    def _block_stop(self, index: int) -> list[Frame]:
        block = self._blocks.pop(index, None)
        if block is None:
            return []
        text = "".join(block.text)
        out: list[Frame] = []
        if block.kind == "text":
            out.append(
                self._item_frame(
                    "response.output_text.done", block, content_index=0, text=text, logprobs=[]
                )
            )
            out.append(
                self._item_frame(
                    "response.content_part.done", block, content_index=0, part=output_text(text)
                )
            )
        elif block.kind == "tool_call" and block.tool_kind == "custom":
            out.append(self._item_frame("response.custom_tool_call_input.done", block, input=text))
        elif block.kind == "tool_call":
            out.append(
                self._item_frame("response.function_call_arguments.done", block, arguments=text)
            )
        elif block.summary_open:
            part = {"type": "summary_text", "text": text}
            out.append(
                self._item_frame(
                    "response.reasoning_summary_text.done", block, summary_index=0, text=text
                )
            )
            out.append(
                self._item_frame(
                    "response.reasoning_summary_part.done", block, summary_index=0, part=part
                )
            )
        item = _item(block, "completed")
        self._done.append((block.output_index, item))
        out.append(
            self._frame("response.output_item.done", output_index=block.output_index, item=item)
        )
        return out

    def _close_all(self) -> list[Frame]:
        out: list[Frame] = []
        for index in sorted(self._blocks, key=lambda i: self._blocks[i].output_index):
            out.extend(self._block_stop(index))
        return out

    def _complete(self) -> list[Frame]:
        out = self._close_all()
        self._finished = True
        incomplete = {
            StopReason.max_tokens: "max_output_tokens",
            StopReason.content_filter: "content_filter",
        }.get(self._stop)
        usage = self._usage or Usage()
        if incomplete is None:
            response = self._response("completed", output=self._output, usage=usage)
            out.append(self._frame("response.completed", response=response))
        else:
            response = self._response(
                "incomplete", output=self._output, usage=usage, incomplete=incomplete
            )
            out.append(self._frame("response.incomplete", response=response))
        return out

    @property
    def _output(self) -> list[dict[str, Any]]:
        return [item for _, item in sorted(self._done, key=lambda pair: pair[0])]

    def _fail(self, event: StreamError) -> list[Frame]:
        self._finished = True
        error = {"code": _ERROR_CODES.get(event.type, "server_error"), "message": event.message}
        response = self._response("failed", output=self._output, usage=self._usage, error=error)
        return [self._frame("response.failed", response=response)]


def _item(block: _Block, status: str) -> dict[str, Any]:
    """The output item for `block` (`in_progress` when it opens, `completed` when done)."""
    text = "".join(block.text)
    if block.kind == "text":
        return message_item(block.item_id, text, status)
    if block.kind == "thinking":
        return reasoning_item(block.item_id, text, block.encrypted)
    return tool_call_item(block.item_id, block.call_id, block.name, text, block.tool_kind, status)
