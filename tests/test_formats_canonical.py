"""Canonical types and helpers (routerd.formats.canonical, routerd.formats.accumulate)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.accumulate import StreamAccumulator
from routerd.formats.canonical import (
    EMPTY,
    STRICT_TOOL_NAME,
    BlockStart,
    CanonicalRequest,
    Message,
    MessageDelta,
    MessageStart,
    Reasoning,
    StopReason,
    StreamError,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolArgsDelta,
    ToolCallPart,
    ToolNameMap,
    TranslationError,
    Usage,
)


def test_valid_names_map_to_themselves() -> None:
    names = ToolNameMap(["get_weather", "Bash", "mcp__github__search-code"])
    for name in ("get_weather", "Bash", "mcp__github__search-code"):
        assert names.to_wire(name) == name
        assert names.from_wire(name) == name


@pytest.mark.parametrize("name", ["github.search", "ns/tool name", "x" * 80, "ünïcode", ""])
def test_invalid_names_are_mapped_reversibly(name: str) -> None:
    names = ToolNameMap([name])
    wire = names.to_wire(name)
    assert STRICT_TOOL_NAME.match(wire)
    assert names.from_wire(wire) == name
    assert ToolNameMap([name]).to_wire(name) == wire  # deterministic


def test_colliding_sanitised_names_stay_distinct() -> None:
    names = ToolNameMap(["a.b", "a_b", "a/b"])
    wires = {names.to_wire(n) for n in ("a.b", "a_b", "a/b")}
    assert len(wires) == 3
    assert names.to_wire("a_b") == "a_b"
    assert {names.from_wire(w) for w in wires} == {"a.b", "a_b", "a/b"}


def test_for_request_registers_tools_history_and_kinds() -> None:
    req = CanonicalRequest(
        model="m",
        messages=(
            Message(
                role="assistant",
                content=(ToolCallPart(id="1", name="old.tool", arguments="{}"),),
            ),
        ),
        tools=(Tool(name="exec", kind="custom"),),
    )
    names = ToolNameMap.for_request(req)
    assert names.kind("exec") == "custom" and names.kind("old.tool") == "function"
    assert names.from_wire(names.to_wire("old.tool")) == "old.tool"
    assert names.from_wire("never_seen") == "never_seen"


def test_empty_extras_is_immutable_hashable_and_equal_to_a_dict() -> None:
    assert EMPTY == {} and len(EMPTY) == 0 and dict(EMPTY) == {}
    assert hash(TextPart(text="a")) == hash(TextPart(text="a"))
    with pytest.raises(KeyError):
        EMPTY["x"]


def test_translation_error_names_the_field() -> None:
    err = TranslationError("response_format", "not supported")
    assert (err.field, err.message, str(err)) == (
        "response_format",
        "not supported",
        "response_format: not supported",
    )
    assert isinstance(err, ValueError)


def test_usage_total() -> None:
    assert Usage(input_tokens=3, output_tokens=4, cached_tokens=2).total_tokens == 7


def test_capability_switches_drop_reasoning() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    req = replace(openai_chat.decode_request(body), reasoning=Reasoning(effort="high"))
    out, dropped = openai_chat.encode_request(req, supports_reasoning=False)
    assert "reasoning_effort" not in out and dropped == ["reasoning_effort"]
    out, dropped = am.encode_request(req, supports_thinking=False, default_max_tokens=8000)
    assert "thinking" not in out and dropped == ["reasoning_effort"]
    assert out["max_tokens"] == 8000


def test_accumulator_assembles_blocks_and_errors() -> None:
    acc = StreamAccumulator()
    for event in (
        MessageStart(id="msg_1", model="m", usage=Usage(input_tokens=5)),
        BlockStart(index=0, kind="thinking", origin="anthropic"),
        ThinkingDelta(index=0, text="a"),
        ThinkingDelta(index=0, text="b"),
        ThinkingDelta(index=0, signature="sig"),
        BlockStart(index=1, kind="tool_call", tool_call_id="t", tool_name="f"),
        ToolArgsDelta(index=1, partial_json='{"x":'),
        ToolArgsDelta(index=1, partial_json="1}"),
        MessageDelta(stop_reason=StopReason.tool_use, usage=Usage(input_tokens=5, output_tokens=9)),
    ):
        acc.add(event)
    resp = acc.response()
    assert resp.content == (
        ThinkingPart(text="ab", signature="sig", origin="anthropic"),
        ToolCallPart(id="t", name="f", arguments='{"x":1}'),
    )
    assert resp.stop_reason is StopReason.tool_use and resp.usage.output_tokens == 9
    broken = StreamAccumulator()
    broken.add(MessageStart(id="x", model="m"))
    broken.add(StreamError(type="overloaded_error", message="busy"))
    assert broken.response().stop_reason is StopReason.error
