"""OpenAI Responses codec (routerd.formats.openai_responses and its SSE encoder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from routerd.formats import openai_responses
from routerd.formats.canonical import (
    BlockStart,
    BlockStop,
    CanonicalResponse,
    ImagePart,
    MessageDelta,
    MessageStart,
    MessageStop,
    RawPart,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
    Usage,
)
from routerd.formats.openai_responses_stream import ResponsesEventEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_decode_codex_request() -> None:
    req = openai_responses.decode_request(load("responses_request_codex.json"))
    assert req.source_format == "openai_responses"
    assert req.stream and req.parallel_tool_calls is False
    assert [p.text for p in req.system] == [
        "You are Codex, a coding agent.",
        "<permissions>sandbox: workspace-write</permissions>",
        "Prefer ripgrep.",
    ]
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]
    user, assistant, tool = req.messages
    assert isinstance(user.content[1], ImagePart)
    assert user.content[1].media_type == "image/png" and user.content[1].data == "iVBORw0KGgo="
    thinking, text, call, custom = assistant.content
    assert thinking == ThinkingPart(
        text="Need to list files.", data="gAAAAB-opaque-blob", origin="openai_responses"
    )
    assert text == TextPart(text="Listing files.")
    assert call == ToolCallPart(id="call_1", name="shell", arguments='{"command":["ls"]}')
    assert isinstance(custom, ToolCallPart) and custom.kind == "custom"
    assert custom.arguments.startswith("*** Begin Patch")
    first, second = tool.content
    assert isinstance(first, ToolResultPart) and first.text() == "README.md\nsrc\n"
    assert isinstance(second, ToolResultPart) and second.kind == "custom"
    assert second.text() == "Done!"
    names = [(t.name, t.kind) for t in req.tools]
    assert names == [
        ("shell", "function"),
        ("apply_patch", "custom"),
        ("mcp__fs.read", "function"),
        ("view_image", "function"),
    ]
    assert req.tools[1].format == {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}
    assert req.reasoning is not None and req.reasoning.effort == "medium"
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "text.verbosity"):
        assert key in req.extras
    assert req.extras["reasoning.summary"] == "auto"
    assert [t["type"] for t in req.extras["tools.web_search"]] == ["web_search"]
    assert not req.contract


def test_decode_string_input_and_formats() -> None:
    req = openai_responses.decode_request(
        {
            "model": "m",
            "input": "hi",
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
        }
    )
    assert req.messages[0].content == (TextPart(text="hi"),)
    assert req.sampling.max_tokens == 50 and req.sampling.temperature == 0.2
    assert req.sampling.top_p == 0.9
    assert req.tool_choice is not None and req.tool_choice.name == "f"
    assert req.response_format is not None and req.response_format.kind == "json_schema"
    assert req.response_format.name == "x" and req.response_format.strict is True
    json_object = openai_responses.decode_request(
        {"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}}
    )
    assert json_object.response_format is not None
    assert json_object.response_format.kind == "json_object"


def test_previous_response_id_is_rejected() -> None:
    with pytest.raises(TranslationError) as err:
        openai_responses.decode_request(
            {"model": "m", "input": "hi", "previous_response_id": "resp_1"}
        )
    assert err.value.field == "previous_response_id"


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hi"},
        {"model": "m", "input": []},
        {"model": "m", "input": [{"type": "message", "role": "robot", "content": "x"}]},
        {"model": "m", "input": "hi", "tool_choice": "sometimes"},
        {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]},
    ],
)
def test_invalid_requests(body: dict[str, Any]) -> None:
    with pytest.raises(TranslationError):
        openai_responses.decode_request(body)


def _response(stop: StopReason = StopReason.tool_use) -> CanonicalResponse:
    return CanonicalResponse(
        id="chatcmpl-1",
        model="up",
        content=(
            ThinkingPart(text="thinking", data="blob", origin="openai_responses"),
            TextPart(text="Let me "),
            TextPart(text="check."),
            ToolCallPart(id="call_1", name="shell", arguments='{"command":["ls"]}'),
            ToolCallPart(id="call_2", name="apply_patch", arguments="*** Begin", kind="custom"),
            ToolCallPart(id="call_3", name="mcp__fs.read", arguments="{}"),
            RawPart(format="anthropic", name="server_tool_use", data={}),
        ),
        stop_reason=stop,
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=40, reasoning_tokens=5),
        created=1700000000,
    )


def test_encode_response_validates() -> None:
    body = openai_responses.encode_response(_response(), "gpt-x")
    resp = Response.model_validate(body)
    assert resp.id == "resp_chatcmpl-1" and resp.status == "completed" and resp.model == "gpt-x"
    kinds = [item.type for item in resp.output]
    assert kinds == ["reasoning", "message", "function_call", "custom_tool_call", "function_call"]
    assert body["output"][0]["encrypted_content"] == "blob"
    assert resp.output_text == "Let me check."
    assert body["output"][2]["call_id"] == "call_1" and body["output"][2]["id"].startswith("fc_")
    assert body["output"][4]["namespace"] == "mcp__fs" and body["output"][4]["name"] == "read"
    assert resp.usage is not None
    assert resp.usage.input_tokens_details.cached_tokens == 40
    assert resp.usage.output_tokens_details.reasoning_tokens == 5
    assert resp.usage.total_tokens == 120


def test_encode_response_incomplete() -> None:
    body = openai_responses.encode_response(_response(StopReason.max_tokens), "gpt-x")
    resp = Response.model_validate(body)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"


def _stream_events() -> list[StreamEvent]:
    return [
        MessageStart(id="up-1", model="up"),
        BlockStart(index=0, kind="thinking"),
        ThinkingDelta(index=0, text="Plan"),
        ThinkingDelta(index=0, text="", signature="sig"),
        BlockStop(index=0),
        BlockStart(index=1, kind="text"),
        TextDelta(index=1, text="Hel"),
        TextDelta(index=1, text="lo"),
        BlockStop(index=1),
        BlockStart(index=2, kind="tool_call", tool_call_id="call_1", tool_name="shell"),
        ToolArgsDelta(index=2, partial_json='{"command":'),
        ToolArgsDelta(index=2, partial_json='["ls"]}'),
        BlockStop(index=2),
        BlockStart(
            index=3, kind="tool_call", tool_call_id="call_2", tool_name="patch", tool_kind="custom"
        ),
        ToolArgsDelta(index=3, partial_json="*** Begin"),
        MessageDelta(
            stop_reason=StopReason.tool_use,
            usage=Usage(input_tokens=10, output_tokens=7, cached_tokens=2, reasoning_tokens=1),
        ),
        MessageStop(),
    ]


def _encode(events: list[StreamEvent]) -> list[tuple[str, dict[str, Any]]]:
    encoder = ResponsesEventEncoder("gpt-x", created=1700000000)
    frames = [frame for event in events for frame in encoder.encode(event)]
    assert encoder.end() == []
    return frames


def test_stream_events_validate() -> None:
    frames = _encode(_stream_events())
    for name, data in frames:
        event = EVENTS.validate_python(data)
        assert event.type == name
    seqs = [data["sequence_number"] for _, data in frames]
    assert seqs == list(range(len(frames)))
    names = [name for name, _ in frames]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names.count("response.output_item.added") == 4
    assert names.count("response.output_item.done") == 4
    for expected in (
        "response.reasoning_summary_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.done",
    ):
        assert expected in names
    name, last = frames[-1]
    assert name == "response.completed"
    resp = Response.model_validate(last["response"])
    assert resp.id == "resp_up-1" and resp.status == "completed"
    assert [item.type for item in resp.output] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert resp.output_text == "Hello"
    assert last["response"]["output"][2]["arguments"] == '{"command":["ls"]}'
    assert resp.usage is not None and resp.usage.total_tokens == 17
    assert resp.usage.input_tokens_details.cached_tokens == 2
    assert resp.usage.output_tokens_details.reasoning_tokens == 1
    done = {data["item"]["id"] for name, data in frames if name == "response.output_item.done"}
    assert done == {item["id"] for item in last["response"]["output"]}


def test_stream_incomplete_and_failed() -> None:
    events: list[StreamEvent] = [
        MessageStart(id="up-2", model="up"),
        BlockStart(index=0, kind="text"),
        TextDelta(index=0, text="cut"),
        MessageDelta(stop_reason=StopReason.max_tokens, usage=Usage(output_tokens=1)),
        MessageStop(),
    ]
    frames = _encode(events)
    assert frames[-1][0] == "response.incomplete"
    assert EVENTS.validate_python(frames[-1][1]).response.incomplete_details is not None
    failed = _encode(
        [MessageStart(id="x", model="up"), StreamError(type="overloaded", message="no")]
    )
    assert failed[-1][0] == "response.failed"
    event = EVENTS.validate_python(failed[-1][1])
    assert event.response.error.message == "no"
