"""Cross-format translation of requests and responses: OpenAI Chat <-> canonical <-> Anthropic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message as SDKMessage
from openai.types.chat import ChatCompletion

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.canonical import (
    STRICT_TOOL_NAME,
    CanonicalRequest,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolNameMap,
    TranslationError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def normalized(messages: tuple[Message, ...]) -> list[Any]:
    """Messages with tool arguments parsed, so JSON whitespace does not count."""
    out: list[Any] = []
    for m in messages:
        for p in m.content:
            if isinstance(p, ToolCallPart):
                out.append((m.role, p.id, p.name, json.loads(p.arguments)))
            else:
                out.append((m.role, p))
    return out


def user(text: str) -> CanonicalRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return openai_chat.decode_request(body)


# ---------------------------------------------------------------------------------------------
# OpenAI Chat request -> Anthropic


def test_openai_request_to_anthropic() -> None:
    req = openai_chat.decode_request(load("openai_chat_request_tools.json"))
    body, dropped = am.encode_request(req)
    assert body["system"] == [
        {"type": "text", "text": "You are a weather assistant."},
        {"type": "text", "text": "Answer in metric units."},
    ]
    first, assistant, follow_up = body["messages"]
    assert first["role"] == "user"
    assert first["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": req.messages[0].content[1].data,  # type: ignore[union-attr]
    }
    assert first["content"][2]["source"] == {"type": "url", "url": "https://example.com/paris.jpg"}
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "call_Xk9fJ2aQ",
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "celsius"},
            }
        ],
    }
    # The tool result and the next user turn share one user message, result first.
    assert follow_up["role"] == "user"
    assert follow_up["content"][0]["type"] == "tool_result"
    assert follow_up["content"][0]["tool_use_id"] == "call_Xk9fJ2aQ"
    assert follow_up["content"][1] == {"type": "text", "text": "And tomorrow?"}
    assert body["tools"][0]["input_schema"]["required"] == ["city"]
    assert body["tools"][0]["strict"] is False
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["stop_sequences"] == ["\n\nEND"]
    assert (body["max_tokens"], body["temperature"]) == (2048, 0.2)
    assert "top_p" not in body  # current Claude models refuse temperature together with top_p
    assert body["metadata"] == {"user_id": "alice"} and body["stream"] is True
    assert sorted(dropped) == sorted(
        [
            "messages.content.detail",
            "top_p",
            "seed",
            "frequency_penalty",
            "prompt_cache_key",
            "metadata",
        ]
    )
    # Anthropic's view of the request decodes back to the same conversation.
    again = am.decode_request(body)
    assert [m.role for m in again.messages] == [m.role for m in req.messages]
    assert normalized(again.messages[1:]) == normalized(req.messages[1:])


def test_anthropic_request_to_openai() -> None:
    req = am.decode_request(load("anthropic_request_claude_code.json"))
    body, dropped = openai_chat.encode_request(req)
    system = body["messages"][0]
    assert system["role"] == "system" and len(system["content"]) == 3
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    image = body["messages"][1]["content"][2]
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assistant = body["messages"][2]
    assert assistant["content"] == "I'll list the files."
    call = assistant["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert json.loads(call["function"]["arguments"]) == {
        "command": "ls -la",
        "description": "List files",
    }
    assert body["messages"][3]["tool_call_id"] == "toolu_01A09q90qw90lq917835lq9"
    assert "<system-reminder>" in body["messages"][3]["content"]
    assert [t["function"]["name"] for t in body["tools"]] == ["Bash", "mcp__github__search_code"]
    assert body["reasoning_effort"] == "high"
    assert body["max_completion_tokens"] == 32000 and body["temperature"] == 1
    assert body["user"] == req.user
    assert set(dropped) == {
        "system.cache_control",
        "messages.content.cache_control",
        "messages.content.thinking",
        "tools.defer_loading",
        "tools.cache_control",
        "context_management",
        "thinking.display",
        "tools.web_search_20250305",
    }


def test_long_user_ids_are_dropped_for_openai() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "metadata": {"user_id": json.dumps({"device_id": "d" * 300, "session": "s"})},
    }
    out, dropped = openai_chat.encode_request(am.decode_request(body))
    assert "user" not in out and dropped == ["user"]


def test_tool_names_are_mapped_and_mapped_back() -> None:
    tool = Tool(name="github.search_code", parameters={"type": "object"})
    req = replace(
        user("find it"), tools=(tool,), tool_choice=ToolChoice(mode="tool", name=tool.name)
    )
    body, _ = am.encode_request(req)
    wire = body["tools"][0]["name"]
    assert STRICT_TOOL_NAME.match(wire) and wire != tool.name
    assert body["tool_choice"] == {"type": "tool", "name": wire}
    upstream = load("anthropic_response_tool_use.json")
    upstream["content"][2]["name"] = wire
    resp = am.decode_response(upstream, ToolNameMap.for_request(req))
    out = openai_chat.encode_response(resp, "m")
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == tool.name


def test_custom_tool_becomes_a_string_argument_function() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "ls"}],
        "tools": [{"type": "custom", "custom": {"name": "exec"}}],
    }
    req = openai_chat.decode_request(body)
    upstream_body, _ = am.encode_request(req)
    assert upstream_body["tools"][0]["input_schema"]["properties"] == {"input": {"type": "string"}}
    upstream = load("anthropic_response_tool_use.json")
    upstream["content"][2].update(name="exec", input={"input": "ls -la"})
    resp = am.decode_response(upstream, ToolNameMap.for_request(req))
    assert resp.content[2] == ToolCallPart(
        id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="exec", arguments="ls -la", kind="custom"
    )
    out = openai_chat.encode_response(resp, "m")
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"]["tool_calls"][0]["custom"] == {
        "name": "exec",
        "input": "ls -la",
    }


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    req = replace(user("think"), reasoning=Reasoning(effort="low"))
    req = replace(req, sampling=replace(req.sampling, max_tokens=1500, temperature=0.3, top_k=3))
    body, dropped = am.encode_request(req)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1499}
    assert "temperature" not in body and "top_k" not in body
    assert set(dropped) == {"temperature", "top_k"}
    small = replace(
        req, sampling=replace(req.sampling, max_tokens=500, temperature=None, top_k=None)
    )
    body, dropped = am.encode_request(small)
    assert "thinking" not in body and dropped == ["reasoning_effort"]


def test_thinking_budget_becomes_reasoning_effort() -> None:
    req = replace(user("think"), reasoning=Reasoning(mode="enabled", budget_tokens=10000))
    assert openai_chat.encode_request(req)[0]["reasoning_effort"] == "medium"
    disabled = replace(req, reasoning=Reasoning(mode="disabled"))
    assert "reasoning_effort" not in openai_chat.encode_request(disabled)[0]


def test_json_schema_maps_and_json_object_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    rf = ResponseFormat(kind="json_schema", name="answer", schema=schema, strict=True)
    body, _ = am.encode_request(replace(user("json"), response_format=rf))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    back = am.decode_request(body)
    assert openai_chat.encode_request(back)[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    with pytest.raises(TranslationError) as err:
        am.encode_request(replace(user("json"), response_format=ResponseFormat(kind="json_object")))
    assert err.value.field == "response_format"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ],
)
def test_contract_breaking_fields_raise(extra: dict[str, Any], field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(TranslationError) as err:
        am.encode_request(openai_chat.decode_request(body))
    assert err.value.field == field


def test_unexpressible_content_raises_or_drops() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [audio]}]}
    with pytest.raises(TranslationError) as err:
        am.encode_request(openai_chat.decode_request(body))
    assert err.value.field == "messages.content.input_audio"
    server = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    body2: dict[str, Any] = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [server]},
            {"role": "user", "content": "more"},
        ],
    }
    out, dropped = openai_chat.encode_request(am.decode_request(body2))
    assert dropped == ["messages.content.server_tool_use"]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_tool_result_images_follow_the_tool_message_for_openai() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "snap", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "done"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/s.png"}},
                        ],
                    }
                ],
            },
        ],
    }
    out, _ = openai_chat.encode_request(am.decode_request(body))
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "done"}
    assert out["messages"][3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://x/s.png"}}],
    }


def test_foreign_thinking_is_not_sent_to_anthropic() -> None:
    msgs = (
        Message(role="user", content=(TextPart(text="q"),)),
        Message(role="assistant", content=(ThinkingPart(text="r"), TextPart(text="a"))),
        Message(role="user", content=(TextPart(text="q2"),)),
    )
    body, dropped = am.encode_request(replace(user("x"), messages=msgs))
    assert body["messages"][1]["content"] == [{"type": "text", "text": "a"}]
    assert dropped == ["messages.content.thinking"]


# ---------------------------------------------------------------------------------------------
# Responses


def test_anthropic_response_to_openai_completion() -> None:
    resp = am.decode_response(load("anthropic_response_tool_use.json"))
    out = openai_chat.encode_response(resp, "anthropic/claude-sonnet-4-5")
    completion = ChatCompletion.model_validate(out)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check the weather."
    assert out["choices"][0]["message"]["reasoning"].startswith("I should call")
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert out["usage"] == {
        "prompt_tokens": 3298,
        "completion_tokens": 154,
        "total_tokens": 3452,
        "prompt_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_openai_response_to_anthropic_message() -> None:
    resp = openai_chat.decode_response(load("openai_chat_response_tool_call.json"))
    out = am.encode_response(resp, "openai/gpt-4.1-mini")
    message = SDKMessage.model_validate(out)
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert message.usage.input_tokens == 1250 - 1024
    assert message.usage.cache_read_input_tokens == 1024
    assert message.usage.output_tokens == 180


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_finish_reason_to_stop_reason(finish: str, stop: str) -> None:
    body = load("openai_chat_response_tool_call.json")
    body["choices"][0]["finish_reason"] = finish
    resp = openai_chat.decode_response(body)
    assert am.encode_response(resp, "m")["stop_reason"] == stop


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reason_to_finish_reason(raw: str, finish: str) -> None:
    body = load("anthropic_response_tool_use.json")
    body["stop_reason"] = raw
    out = openai_chat.encode_response(am.decode_response(body), "m")
    assert out["choices"][0]["finish_reason"] == finish
