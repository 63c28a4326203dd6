"""Stream codecs: recorded upstream SSE -> canonical events -> client frames, both directions.

The outputs are checked with the SDKs' own models and stream accumulators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.accumulate import StreamAccumulator
from routerd.formats.anthropic_stream import MessagesEventDecoder, MessagesEventEncoder
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
from routerd.formats.openai_chat_stream import ChatChunkDecoder, ChatChunkEncoder
from routerd.formats.openai_responses_stream import ResponsesEventEncoder
from routerd.formats.sse import SSEParser, encode_frame

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
EVENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


def sse_payloads(name: str) -> list[tuple[str | None, str]]:
    parser = SSEParser()
    raw = (FIXTURES / name).read_bytes()
    events = [e for i in range(0, len(raw), 50) for e in parser.feed(raw[i : i + 50])]
    return [(e.event, e.data) for e in events + parser.close()]


def anthropic_events(name: str, names: ToolNameMap | None = None) -> list[StreamEvent]:
    decoder = MessagesEventDecoder(names)
    out: list[StreamEvent] = []
    for event, data in sse_payloads(name):
        payload = json.loads(data)
        assert payload["type"] == event
        out.extend(decoder.feed(payload))
    return out


def openai_events(name: str) -> list[StreamEvent]:
    decoder = ChatChunkDecoder()
    out: list[StreamEvent] = []
    for _, data in sse_payloads(name):
        if data == "[DONE]":
            out.extend(decoder.finish())
        else:
            out.extend(decoder.feed(json.loads(data)))
    return out


def to_anthropic(events: list[StreamEvent], model: str = "m") -> list[tuple[str, dict[str, Any]]]:
    encoder = MessagesEventEncoder(model)
    return [frame for e in events for frame in encoder.encode(e)]


def sdk_accumulate(frames: list[tuple[str, dict[str, Any]]]) -> SDKMessage:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in frames:
        # The wire carries exactly what we produced: round-trip each frame through SSE.
        (parsed,) = SSEParser().feed(encode_frame(data, name))
        assert parsed.event == name
        if name == "ping":
            continue
        event = EVENT_ADAPTER.validate_python(parsed.json())
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return SDKMessage.model_validate(snapshot.model_dump())


def to_openai(events: list[StreamEvent], include_usage: bool = True) -> list[dict[str, Any]]:
    encoder = ChatChunkEncoder("client-model", include_usage=include_usage, created=1)
    return [chunk for e in events for chunk in encoder.encode(e)]


def openai_accumulate(chunks: list[dict[str, Any]]) -> ChatCompletion:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return ChatCompletion.model_validate(state.get_final_completion().model_dump())


# ---------------------------------------------------------------------------------------------
# Anthropic upstream


def test_anthropic_stream_decodes_to_canonical_events() -> None:
    events = anthropic_events("anthropic_stream_thinking_tool.sse")
    start = Usage(input_tokens=2472, output_tokens=2, cached_tokens=2000)
    assert events[0] == MessageStart(
        id="msg_014p7gG3wDgGV9EUtLvnow3U", model="claude-sonnet-4-5-20250929", usage=start
    )
    assert events[1] == BlockStart(index=0, kind="thinking", origin="anthropic")
    assert events[4] == ThinkingDelta(index=0, signature=events[4].signature)  # type: ignore[union-attr]
    assert events[5] == BlockStop(index=0)
    tool_start = events[10]
    assert tool_start == BlockStart(
        index=2,
        kind="tool_call",
        tool_call_id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        tool_name="get_weather",
    )
    args = "".join(e.partial_json for e in events if isinstance(e, ToolArgsDelta))
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}
    assert events[-2] == MessageDelta(
        stop_reason=StopReason.tool_use,
        usage=Usage(input_tokens=2472, output_tokens=89, cached_tokens=2000),
        raw_stop_reason="tool_use",
    )
    assert events[-1] == MessageStop()


def test_anthropic_stream_round_trip_is_exact() -> None:
    upstream = [(e, json.loads(d)) for e, d in sse_payloads("anthropic_stream_thinking_tool.sse")]
    frames = to_anthropic(
        anthropic_events("anthropic_stream_thinking_tool.sse"), model="claude-sonnet-4-5-20250929"
    )
    # Same event names in the same order; the empty input_json_delta is not repeated.
    expected = [(e, d) for e, d in upstream if d.get("delta", {}).get("partial_json") != ""]
    assert [name for name, _ in frames] == [name for name, _ in expected]
    for (_, got), (_, want) in zip(frames, expected, strict=True):
        if want["type"] == "message_start":
            assert got["message"]["usage"]["cache_read_input_tokens"] == 2000
            got["message"]["usage"] = want["message"]["usage"]
        elif want["type"] == "message_delta":
            assert got["usage"]["output_tokens"] == 89
            got["usage"] = want["usage"]
        assert got == want


def test_anthropic_stream_assembles_like_the_sdk() -> None:
    events = anthropic_events("anthropic_stream_thinking_tool.sse")
    message = sdk_accumulate(to_anthropic(events))
    thinking, text, tool = message.content
    assert thinking.type == "thinking" and thinking.signature.startswith("EqQBCgIYAhIM")
    assert text.type == "text" and text.text == "Okay, let me check the weather."
    assert tool.type == "tool_use" and tool.input == {"city": "Paris", "unit": "celsius"}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 472 and message.usage.cache_read_input_tokens == 2000
    assert message.usage.output_tokens == 89


def test_anthropic_stream_to_openai_chunks() -> None:
    chunks = to_openai(anthropic_events("anthropic_stream_thinking_tool.sse"))
    assert all(c["object"] == "chat.completion.chunk" and "usage" in c for c in chunks)
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning", "") for c in chunks if c["choices"]
    )
    assert reasoning == "The user wants the weather in Paris. I will call get_weather."
    completion = openai_accumulate(chunks)
    message = completion.choices[0].message
    assert message.content == "Okay, let me check the weather."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2472 and completion.usage.completion_tokens == 89
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2000


def test_anthropic_stream_matches_the_non_streaming_answer() -> None:
    acc = StreamAccumulator(am.FORMAT)
    for event in anthropic_events("anthropic_stream_thinking_tool.sse"):
        acc.add(event)
    streamed = am.encode_response(acc.response(), "m")
    SDKMessage.model_validate(streamed)
    assert streamed["content"][2]["input"] == {"city": "Paris", "unit": "celsius"}
    assert streamed["content"][0]["signature"].startswith("EqQBCgIYAhIM")
    assert (
        sdk_accumulate(
            to_anthropic(anthropic_events("anthropic_stream_thinking_tool.sse"))
        ).model_dump(exclude_none=True)["content"]
        == streamed["content"]
    )


def test_custom_tool_input_is_unwrapped_from_the_stream() -> None:
    names = ToolNameMap()
    names.add("exec", "custom")
    decoder = MessagesEventDecoder(names)
    payloads = [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "exec", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"input": "ls'},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ' -la"}'},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    events = [e for p in payloads for e in decoder.feed(p)]
    assert events == [
        BlockStart(
            index=0, kind="tool_call", tool_call_id="toolu_9", tool_name="exec", tool_kind="custom"
        ),
        ToolArgsDelta(index=0, partial_json="ls -la"),
        BlockStop(index=0),
    ]


def test_server_tool_blocks_are_skipped_and_blocks_renumbered() -> None:
    decoder = MessagesEventDecoder()
    payloads: list[dict[str, Any]] = [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "ping"},
    ]
    events = [e for p in payloads for e in decoder.feed(p)]
    assert events == [
        BlockStart(index=0, kind="text"),
        TextDelta(index=0, text="hi"),
        BlockStop(index=0),
    ]


def test_anthropic_error_event_maps_both_ways() -> None:
    payload = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    (event,) = MessagesEventDecoder().feed(payload)
    assert event == StreamError(type="overloaded_error", message="Overloaded")
    assert MessagesEventEncoder("m").encode(event) == [("error", payload)]
    assert ChatChunkEncoder("m").encode(event) == [
        {
            "error": {
                "message": "Overloaded",
                "type": "overloaded_error",
                "param": None,
                "code": None,
            }
        }
    ]


# ---------------------------------------------------------------------------------------------
# OpenAI upstream


def test_openai_stream_decodes_tool_calls_by_index() -> None:
    events = openai_events("openai_chat_stream_tool_call.sse")
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "MessageStart",
        "BlockStart",
        "TextDelta",
        "TextDelta",
        "BlockStop",
        "BlockStart",
        "ToolArgsDelta",
        "ToolArgsDelta",
        "BlockStop",
        "BlockStart",
        "ToolArgsDelta",
        "BlockStop",
        "MessageDelta",
        "MessageStop",
    ]
    assert events[5] == BlockStart(
        index=1, kind="tool_call", tool_call_id="call_7Qp2LmZ", tool_name="get_weather"
    )
    assert events[12] == MessageDelta(
        stop_reason=StopReason.tool_use,
        usage=Usage(input_tokens=1250, output_tokens=42, cached_tokens=1024),
        raw_stop_reason="tool_calls",
    )


def test_openai_stream_to_anthropic_events() -> None:
    frames = to_anthropic(openai_events("openai_chat_stream_tool_call.sse"))
    for name, data in frames:
        if name != "ping":
            EVENT_ADAPTER.validate_python(data)
    assert [name for name, _ in frames][:3] == ["message_start", "content_block_start", "ping"]
    message = sdk_accumulate(frames)
    text, first, second = message.content
    assert text.type == "text" and text.text == "Checking both cities."
    assert first.type == "tool_use" and first.input == {"city": "Paris"}
    assert second.type == "tool_use" and second.id == "call_8Rt4NoA"
    assert second.input == {"city": "Lyon"}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 226
    assert message.usage.cache_read_input_tokens == 1024
    assert message.usage.output_tokens == 42
    indexes = [d["index"] for n, d in frames if n == "content_block_start"]
    assert indexes == [0, 1, 2]


def test_openai_reasoning_stream_to_anthropic_thinking() -> None:
    events = openai_events("openai_chat_stream_reasoning.sse")
    message = sdk_accumulate(to_anthropic(events))
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user asks 2+2. That is 4."
    assert thinking.signature == ""
    assert text.type == "text" and text.text == "4"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 20
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 15


def test_openai_stream_round_trip_through_the_sdk() -> None:
    chunks = to_openai(openai_events("openai_chat_stream_tool_call.sse"))
    completion = openai_accumulate(chunks)
    expected = openai_chat.decode_response(
        json.loads((FIXTURES / "openai_chat_response_tool_call.json").read_text())
    )
    message = completion.choices[0].message
    assert message.tool_calls is not None
    got = [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls]  # type: ignore[union-attr]
    want = [(p.id, json.loads(p.arguments)) for p in expected.content[1:]]  # type: ignore[union-attr]
    assert got == want
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 1292


def test_openai_stream_without_usage_chunk_ends_on_done() -> None:
    decoder = ChatChunkDecoder()
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "length"}],
    }
    events = decoder.feed(chunk)
    assert [type(e).__name__ for e in events] == [
        "MessageStart",
        "BlockStart",
        "TextDelta",
        "BlockStop",
    ]
    assert decoder.finish() == [
        MessageDelta(stop_reason=StopReason.max_tokens, raw_stop_reason="length"),
        MessageStop(),
    ]
    assert decoder.finish() == []


def test_openai_stream_error_chunk() -> None:
    decoder = ChatChunkDecoder()
    events = decoder.feed({"error": {"message": "upstream died", "type": "server_error"}})
    assert events == [StreamError(type="server_error", message="upstream died")]
    assert decoder.feed({"choices": []}) == [] and decoder.finish() == []
    # Anthropic clients only know Anthropic's error types.
    (frame,) = MessagesEventEncoder("m").encode(events[0])
    assert frame == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "upstream died"}},
    )


def test_chunk_encoder_without_usage_omits_usage_fields() -> None:
    chunks = to_openai(openai_events("openai_chat_stream_tool_call.sse"), include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)


def test_tool_call_chunks_without_index_continue_the_last_call() -> None:
    decoder = ChatChunkDecoder()

    def chunk(call: dict[str, Any]) -> dict[str, Any]:
        return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}

    events = decoder.feed(chunk({"id": "a", "function": {"name": "f", "arguments": "{"}}))
    events += decoder.feed(chunk({"function": {"arguments": "}"}}))
    events += decoder.feed(chunk({"id": "b", "function": {"name": "g", "arguments": "{}"}}))
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [(s.tool_call_id, s.index) for s in starts] == [("a", 0), ("b", 1)]
    args = [(e.index, e.partial_json) for e in events if isinstance(e, ToolArgsDelta)]
    assert args == [(0, "{"), (0, "}"), (1, "{}")]


def _chat_encoder(model: str, **extra: Any) -> Any:
    return ChatChunkEncoder(model, created=0, include_usage=bool(extra))


@pytest.mark.parametrize(
    ("encoder_type", "extra"),
    [
        (MessagesEventEncoder, {}),
        (ResponsesEventEncoder, {"created": 0, "response_id": "r_1"}),
        (_chat_encoder, {}),
        (_chat_encoder, {"include_usage": True}),
    ],
)
def test_text_delta_bytes_match_the_framed_event(encoder_type: Any, extra: Any) -> None:
    """`frames` (a byte template for text deltas) gives exactly `encode_frame` of `encode`."""
    encoder, twin = encoder_type('m "quoted"', **extra), encoder_type('m "quoted"', **extra)
    events: list[StreamEvent] = [
        TextDelta(index=0, text="before the start"),
        MessageStart(id="msg_1", model="up"),
        BlockStart(index=0, kind="text"),
        TextDelta(index=0, text='quote " backslash \\ newline \n tab \t é 😀 </script>'),
        TextDelta(index=0, text=""),
        TextDelta(index=7, text="no such block"),
        BlockStop(index=0),
        BlockStart(index=1, kind="text"),
        TextDelta(index=1, text="second"),
        MessageDelta(stop_reason=StopReason.end_turn, usage=Usage(input_tokens=1)),
        MessageStop(),
        TextDelta(index=1, text="after the end"),
    ]
    for event in events:
        encoded = twin.encode(event)
        chat = isinstance(twin, ChatChunkEncoder)
        pairs = [(None, data) for data in encoded] if chat else encoded
        assert encoder.frames(event) == b"".join(encode_frame(data, name) for name, data in pairs)
