"""Anthropic Messages codec (routerd.formats.anthropic_messages) within the format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message as SDKMessage

from routerd.formats import anthropic_messages as am
from routerd.formats.canonical import (
    CanonicalResponse,
    ImagePart,
    RawPart,
    Reasoning,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
    Usage,
)

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_decode_claude_code_request() -> None:
    req = am.decode_request(load("anthropic_request_claude_code.json"))
    assert req.source_format == "anthropic_messages"
    assert [p.text[:12] for p in req.system] == ["You are Clau", "You are an i", "The user swi"]
    assert req.system[1].extras == {"cache_control": {"type": "ephemeral"}}
    assert req.system[2].text == "The user switched to plan mode."
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    image = req.messages[0].content[2]
    assert isinstance(image, ImagePart) and image.media_type == "image/png"
    thinking, text, call = req.messages[1].content
    assert thinking == ThinkingPart(
        text="The user wants a file listing. I'll use the Bash tool.",
        signature="EqMDCkYIBxgCKkBnJ8kq0kGgHTZ3d1pD+EXAMPLESIGNATURE==",
        origin="anthropic",
    )
    assert text == TextPart(text="I'll list the files.")
    assert isinstance(call, ToolCallPart)
    assert json.loads(call.arguments) == {"command": "ls -la", "description": "List files"}
    (result,) = req.messages[2].content
    assert isinstance(result, ToolResultPart) and "<system-reminder>" in result.text()
    assert [t.name for t in req.tools] == ["Bash", "mcp__github__search_code"]
    assert req.tools[1].extras == {"defer_loading": True, "cache_control": {"type": "ephemeral"}}
    assert req.reasoning == Reasoning(effort="high", mode="adaptive")
    assert req.user is not None and req.user.startswith("user_2f8a7c")
    assert set(req.extras) == {
        "context_management",
        "thinking.display",
        "tools.web_search_20250305",
    }
    assert req.sampling.max_tokens == 32000 and req.sampling.temperature == 1


def test_request_round_trip_keeps_signatures_and_hints() -> None:
    body = load("anthropic_request_claude_code.json")
    req = am.decode_request(body)
    encoded, dropped = am.encode_request(req)
    assert dropped == []
    assert am.decode_request(encoded) == req
    # The system message inside `messages` is folded into `system`.
    assert encoded["system"] == [
        *body["system"],
        {"type": "text", "text": body["messages"][3]["content"]},
    ]
    expected = copy.deepcopy(body["messages"][:3])
    del expected[2]["content"][0]["is_error"]  # false is the default
    assert encoded["messages"] == expected
    assert encoded["tools"] == body["tools"]
    for key in ("thinking", "output_config", "context_management", "metadata", "tool_choice"):
        assert encoded[key] == body[key]
    assert encoded["max_tokens"] == 32000 and encoded["stream"] is True


def test_string_content_and_tool_result_variants() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "boom"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                        ],
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        "title": "Notes",
                    },
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["STOP"],
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    req = am.decode_request(body)
    assert req.system == (TextPart(text="Be brief."),)
    assert req.messages[1].content[0] == ThinkingPart(
        data="EmwKAhgBEgy3va3pzix/LafPsn4a", redacted=True, origin="anthropic"
    )
    result = req.messages[2].content[0]
    assert isinstance(result, ToolResultPart) and result.is_error
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    assert req.parallel_tool_calls is False
    assert req.reasoning == Reasoning(budget_tokens=2048, mode="enabled")
    encoded, dropped = am.encode_request(req)
    assert dropped == []
    assert encoded["messages"][1:] == body["messages"][1:]
    assert encoded["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    for key in ("system", "tool_choice", "stop_sequences", "top_k", "thinking", "tools"):
        assert encoded[key] == body[key]


def test_server_tool_blocks_stay_raw() -> None:
    block = {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "weather"},
    }
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [block]}],
    }
    req = am.decode_request(body)
    part = req.messages[1].content[0]
    assert isinstance(part, RawPart) and part.droppable
    assert am.encode_request(req)[0]["messages"][1]["content"] == [block]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 1, "messages": "x"}, "messages"),
        (
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "thinking": {"type": "sometimes"},
            },
            "thinking.type",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(TranslationError) as err:
        am.decode_request(body)
    assert err.value.field == field


def test_decode_response_usage_includes_cache() -> None:
    resp = am.decode_response(load("anthropic_response_tool_use.json"))
    assert resp.stop_reason is StopReason.tool_use
    assert resp.usage == Usage(
        input_tokens=226 + 1024 + 2048,
        output_tokens=154,
        cached_tokens=2048,
        cache_write_tokens=1024,
    )
    thinking, text, call = resp.content
    assert isinstance(thinking, ThinkingPart) and thinking.signature
    assert text == TextPart(text="Let me check the weather.")
    assert isinstance(call, ToolCallPart) and call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"


def test_encode_response_validates_with_sdk_and_round_trips() -> None:
    body = load("anthropic_response_tool_use.json")
    resp = am.decode_response(body)
    out = am.encode_response(resp, "anthropic/claude-sonnet-4-5")
    message = SDKMessage.model_validate(out)
    assert message.model == "anthropic/claude-sonnet-4-5"
    assert message.usage.input_tokens == 226
    assert message.usage.cache_read_input_tokens == 2048
    assert message.usage.cache_creation_input_tokens == 1024
    assert out["content"] == body["content"]
    assert out["stop_reason"] == "tool_use"


@pytest.mark.parametrize("raw", ["pause_turn", "refusal", "model_context_window_exceeded"])
def test_anthropic_only_stop_reasons_survive_same_format(raw: str) -> None:
    body = copy.deepcopy(load("anthropic_response_tool_use.json"))
    body["stop_reason"] = raw
    resp = am.decode_response(body)
    assert am.encode_response(resp, "m")["stop_reason"] == raw


def test_encode_foreign_response_maps_stop_and_thinking() -> None:
    resp = CanonicalResponse(
        id="chatcmpl-1",
        model="gpt",
        content=(ThinkingPart(text="think"), TextPart(text="no")),
        stop_reason=StopReason.content_filter,
        usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=4, reasoning_tokens=2),
        source_format="openai_chat",
    )
    out = am.encode_response(resp, "m")
    SDKMessage.model_validate(out)
    assert out["stop_reason"] == "refusal"
    assert out["content"][0] == {"type": "thinking", "thinking": "think", "signature": ""}
    assert out["usage"] == {
        "input_tokens": 6,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens_details": {"thinking_tokens": 2},
    }


def test_error_envelope() -> None:
    assert am.error_body("Overloaded", "overloaded_error") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert am.error_body("x", "made_up")["error"]["type"] == "api_error"
    assert "request_too_large" in am.ERROR_TYPES
