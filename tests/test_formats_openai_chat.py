"""OpenAI Chat Completions codec (routerd.formats.openai_chat): decode/encode within the format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from routerd.formats import openai_chat
from routerd.formats.canonical import (
    CanonicalResponse,
    ImagePart,
    RawPart,
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


def test_decode_request_fixture() -> None:
    req = openai_chat.decode_request(load("openai_chat_request_tools.json"))
    assert req.source_format == "openai_chat"
    assert [p.text for p in req.system] == [
        "You are a weather assistant.",
        "Answer in metric units.",
    ]
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    text, inline, remote = req.messages[0].content
    assert isinstance(text, TextPart)
    assert isinstance(inline, ImagePart) and inline.media_type == "image/png"
    assert inline.data is not None and inline.data.startswith("iVBOR")
    assert inline.extras == {"detail": "low"}
    assert isinstance(remote, ImagePart) and remote.url == "https://example.com/paris.jpg"
    (call,) = req.messages[1].content
    assert call == ToolCallPart(
        id="call_Xk9fJ2aQ", name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}'
    )
    (result,) = req.messages[2].content
    assert isinstance(result, ToolResultPart) and result.tool_call_id == "call_Xk9fJ2aQ"
    assert result.text() == '{"temp": 18, "sky": "cloudy"}'
    assert [t.name for t in req.tools] == ["get_weather", "get_daily_forecast"]
    assert req.tool_choice is not None and req.tool_choice.mode == "auto"
    assert req.parallel_tool_calls is False
    assert req.sampling.max_tokens == 2048
    assert req.sampling.stop == ("\n\nEND",)
    assert (req.sampling.temperature, req.sampling.top_p, req.sampling.seed) == (0.2, 0.9, 42)
    assert req.stream and req.include_usage
    assert req.user == "alice"
    assert set(req.extras) == {"frequency_penalty", "prompt_cache_key", "metadata"}
    assert req.contract == {}


def test_request_round_trip_preserves_meaning() -> None:
    body = load("openai_chat_request_tools.json")
    req = openai_chat.decode_request(body)
    encoded, dropped = openai_chat.encode_request(req)
    assert dropped == []
    assert openai_chat.decode_request(encoded) == req
    assert encoded["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are a weather assistant."},
            {"type": "text", "text": "Answer in metric units."},
        ],
    }
    assert encoded["messages"][1:] == body["messages"][2:]
    assert encoded["tools"] == body["tools"]
    for key in ("tool_choice", "parallel_tool_calls", "max_completion_tokens", "seed", "user"):
        assert encoded[key] == body[key]
    assert encoded["stop"] == ["\n\nEND"]
    assert encoded["frequency_penalty"] == 0.5 and encoded["metadata"] == {"app": "weather"}


def test_request_stream_always_asks_for_usage_and_max_tokens_field() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 10,
    }
    req = openai_chat.decode_request(body)
    assert not req.include_usage and req.sampling.max_tokens == 10
    encoded, _ = openai_chat.encode_request(req, max_tokens_field="max_tokens")
    assert encoded["stream_options"] == {"include_usage": True}
    assert encoded["max_tokens"] == 10 and "max_completion_tokens" not in encoded


def test_contract_fields_survive_same_format() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
                ],
            }
        ],
        "n": 3,
        "logprobs": True,
        "top_logprobs": 2,
    }
    req = openai_chat.decode_request(body)
    assert req.contract == {"n": 3, "logprobs": True, "top_logprobs": 2}
    assert isinstance(req.messages[0].content[0], RawPart)
    encoded, dropped = openai_chat.encode_request(req)
    assert dropped == []
    assert encoded["n"] == 3 and encoded["top_logprobs"] == 2
    assert encoded["messages"] == body["messages"]


def test_custom_tools_and_reasoning_history() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "run ls"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Use exec.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "custom",
                        "custom": {"name": "exec", "input": "ls -la"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
        ],
        "tools": [
            {
                "type": "custom",
                "custom": {
                    "name": "exec",
                    "description": "Run a command",
                    "format": {
                        "type": "grammar",
                        "grammar": {"syntax": "lark", "definition": "start: /.+/"},
                    },
                },
            }
        ],
        "tool_choice": {"type": "custom", "custom": {"name": "exec"}},
        "reasoning_effort": "minimal",
    }
    req = openai_chat.decode_request(body)
    thinking, call = req.messages[1].content
    assert thinking == ThinkingPart(text="Use exec.")
    assert call == ToolCallPart(id="call_1", name="exec", arguments="ls -la", kind="custom")
    result = req.messages[2].content[0]
    assert isinstance(result, ToolResultPart) and result.kind == "custom"
    assert req.tools[0].kind == "custom" and req.reasoning is not None
    encoded, dropped = openai_chat.encode_request(req)
    assert dropped == ["messages.content.thinking"]
    assert encoded["tools"] == body["tools"]
    assert encoded["tool_choice"] == body["tool_choice"]
    assert encoded["reasoning_effort"] == "minimal"
    assert encoded["messages"][1]["tool_calls"] == body["messages"][1]["tool_calls"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "function", "content": "x"}]}, "messages.role"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages.tool_call_id"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(TranslationError) as err:
        openai_chat.decode_request(body)
    assert err.value.field == field


def test_decode_response_fixture() -> None:
    resp = openai_chat.decode_response(load("openai_chat_response_tool_call.json"))
    assert resp.id == "chatcmpl-BmT3kq5nXr9e8GZyQ1a2b3c4d5e6f"
    assert resp.stop_reason is StopReason.tool_use and resp.raw_stop_reason == "tool_calls"
    text, first, second = resp.content
    assert text == TextPart(text="Let me look that up.")
    assert isinstance(first, ToolCallPart) and first.arguments == '{"city":"Paris"}'
    assert isinstance(second, ToolCallPart) and second.id == "call_8Rt4NoA"
    assert resp.usage == Usage(
        input_tokens=1250, output_tokens=180, cached_tokens=1024, reasoning_tokens=64
    )


def test_encode_response_validates_with_sdk_and_round_trips() -> None:
    body = load("openai_chat_response_tool_call.json")
    resp = openai_chat.decode_response(body)
    out = openai_chat.encode_response(resp, "openai/gpt-4.1-mini")
    completion = ChatCompletion.model_validate(out)
    assert completion.model == "openai/gpt-4.1-mini"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.total_tokens == 1430
    details = completion.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == 1024
    again = openai_chat.decode_response(out)
    assert (again.content, again.usage, again.stop_reason) == (
        resp.content,
        resp.usage,
        resp.stop_reason,
    )


def test_encode_response_reasoning_and_stop_mapping() -> None:
    resp = CanonicalResponse(
        id="x",
        model="m",
        content=(
            ThinkingPart(text="hmm", signature="sig", origin="anthropic"),
            TextPart(text="ok"),
        ),
        stop_reason=StopReason.max_tokens,
    )
    out = openai_chat.encode_response(resp, "m")
    ChatCompletion.model_validate(out)
    message = out["choices"][0]["message"]
    assert message["content"] == "ok" and message["reasoning"] == "hmm"
    assert out["choices"][0]["finish_reason"] == "length"
    refusal = copy.deepcopy(out)
    refusal["choices"][0]["finish_reason"] = "content_filter"
    assert openai_chat.decode_response(refusal).stop_reason is StopReason.content_filter


def test_error_envelope() -> None:
    assert openai_chat.error_body("bad", param="model", code="invalid_request") == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "model",
            "code": "invalid_request",
        }
    }
