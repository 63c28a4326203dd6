"""Gemini generateContent <-> canonical: request bodies, responses, usage and stream chunks."""

from __future__ import annotations

from typing import Any

import pytest

from routerd.formats.accumulate import StreamAccumulator
from routerd.formats.canonical import (
    BlockStart,
    BlockStop,
    CanonicalRequest,
    ImagePart,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ResponseFormat,
    Sampling,
    StopReason,
    StreamError,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolArgsDelta,
    ToolCallPart,
    ToolChoice,
    ToolNameMap,
    ToolResultPart,
    TranslationError,
    Usage,
)
from routerd.formats.gemini import decode_response, decode_usage, encode_request, thinking_config
from routerd.formats.gemini_stream import GeminiStreamDecoder

PARAMS: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": ["integer", "null"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
USAGE_META = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 40,
    "totalTokenCount": 1250,
    "cachedContentTokenCount": 300,
    "thoughtsTokenCount": 10,
}


def full_request() -> CanonicalRequest:
    return CanonicalRequest(
        model="gemini-2.5-flash",
        system=(TextPart(text="Be brief."),),
        messages=(
            Message(
                role="user",
                content=(
                    TextPart(text="Weather here?"),
                    ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                ),
            ),
            Message(
                role="assistant",
                content=(
                    TextPart(text="Checking."),
                    ToolCallPart(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                ),
            ),
            Message(
                role="tool",
                content=(ToolResultPart(tool_call_id="call_1", content=(TextPart(text="18C"),)),),
            ),
            Message(role="user", content=(TextPart(text="Thanks"),)),
        ),
        tools=(Tool(name="get_weather", description="Weather for a city", parameters=PARAMS),),
        tool_choice=ToolChoice(mode="tool", name="get_weather"),
        sampling=Sampling(max_tokens=256, temperature=0.2, top_p=0.9, top_k=40, stop=("END",)),
        response_format=ResponseFormat(
            kind="json_schema",
            name="weather",
            schema={"type": "object", "properties": {"t": {"type": "number"}}},
        ),
        reasoning=Reasoning(budget_tokens=2048),
        source_format="openai_chat",
    )


EXPECTED_BODY: dict[str, Any] = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Weather here?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                {"text": "Thanks"},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "City name"},
                            "days": {"type": "integer", "nullable": True},
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ],
    "toolConfig": {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    },
    "generationConfig": {
        "maxOutputTokens": 256,
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"t": {"type": "number"}}},
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
}


def test_encode_full_request() -> None:
    body, dropped = encode_request(full_request(), None, None)
    assert body == EXPECTED_BODY
    assert "model" not in body
    assert dropped == ["tools.parameters.$schema", "tools.parameters.additionalProperties"]


def test_encode_tool_choice_modes_and_extras() -> None:
    base = CanonicalRequest(
        model="m",
        messages=(Message(role="user", content=(TextPart(text="hi"),)),),
        tools=(Tool(name="noargs", parameters={"type": "object", "properties": {}}),),
        parallel_tool_calls=False,
        user="u1",
        extras={"metadata": {"a": 1}},
        source_format="anthropic_messages",
    )
    for mode, wire in (("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")):
        req = CanonicalRequest(**{**_fields(base), "tool_choice": ToolChoice(mode=mode)})  # type: ignore[arg-type]
        body, dropped = encode_request(req, None, None)
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": wire}}
        assert body["tools"] == [{"functionDeclarations": [{"name": "noargs"}]}]
        assert dropped == ["parallel_tool_calls", "user", "metadata"]


def _fields(req: CanonicalRequest) -> dict[str, Any]:
    return {name: getattr(req, name) for name in req.__dataclass_fields__}


def test_encode_data_url_image_and_rejects_remote_url() -> None:
    msg = Message(role="user", content=(ImagePart(url="data:image/jpeg;base64,AAAA"),))
    body, _ = encode_request(CanonicalRequest(model="m", messages=(msg,)), None, None)
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}
    ]
    remote = Message(role="user", content=(ImagePart(url="https://example.com/cat.png"),))
    with pytest.raises(TranslationError) as err:
        encode_request(CanonicalRequest(model="m", messages=(remote,)), None, None)
    assert err.value.field == "image_url"


def test_encode_unknown_tool_result_id_is_an_error() -> None:
    msg = Message(role="tool", content=(ToolResultPart(tool_call_id="nope"),))
    with pytest.raises(TranslationError) as err:
        encode_request(CanonicalRequest(model="m", messages=(msg,)), None, None)
    assert err.value.field == "tool_call_id"


def test_encode_error_result_and_thought_signature_round_trip() -> None:
    call = ToolCallPart(
        id="c1", name="f", arguments="{}", extras={"thoughtSignature": "c2lnbmF0dXJl"}
    )
    msgs = (
        Message(role="assistant", content=(ThinkingPart(text="x", origin="anthropic"), call)),
        Message(
            role="tool",
            content=(
                ToolResultPart(tool_call_id="c1", content=(TextPart(text="boom"),), is_error=True),
            ),
        ),
    )
    body, dropped = encode_request(CanonicalRequest(model="m", messages=msgs), None, None)
    assert body["contents"] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnbmF0dXJl"}
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "f", "response": {"error": "boom"}}}],
        },
    ]
    assert dropped == ["thinking"]


def test_thinking_config_from_effort() -> None:
    assert thinking_config(None) is None
    assert thinking_config(Reasoning(mode="disabled")) == {"thinkingBudget": 0}
    assert thinking_config(Reasoning(effort="none")) == {"thinkingBudget": 0}
    assert thinking_config(Reasoning(effort="low")) == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }
    assert thinking_config(Reasoning(mode="adaptive")) == {
        "thinkingBudget": -1,
        "includeThoughts": True,
    }


def test_decode_usage() -> None:
    assert decode_usage(USAGE_META) == Usage(
        input_tokens=1200, output_tokens=50, cached_tokens=300, reasoning_tokens=10
    )
    assert decode_usage(None) == Usage()


def test_decode_text_and_thoughts() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think.", "thought": True},
                        {"text": "Hello"},
                        {"text": " world"},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": USAGE_META,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp1",
    }
    resp = decode_response(body, ToolNameMap())
    assert resp.id == "resp1"
    assert resp.model == "gemini-2.5-flash"
    assert resp.content == (
        ThinkingPart(text="Let me think.", origin="gemini"),
        TextPart(text="Hello world"),
    )
    assert resp.stop_reason == StopReason.end_turn
    assert resp.usage.output_tokens == 50


def test_decode_function_call_maps_names_and_ids() -> None:
    names = ToolNameMap(["my.tool"])
    wire = names.to_wire("my.tool")
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": wire, "args": {"q": 1}},
                            "thoughtSignature": "sig",
                        },
                        {"functionCall": {"name": wire, "args": {"q": 2}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "responseId": "r9",
    }
    resp = decode_response(body, names)
    assert resp.stop_reason == StopReason.tool_use
    assert resp.content == (
        ToolCallPart(
            id="call_r9_0", name="my.tool", arguments='{"q":1}', extras={"thoughtSignature": "sig"}
        ),
        ToolCallPart(id="call_r9_1", name="my.tool", arguments='{"q":2}'),
    )


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("MAX_TOKENS", StopReason.max_tokens), ("SAFETY", StopReason.content_filter)],
)
def test_decode_finish_reasons(finish: str, stop: StopReason) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": finish}]}
    assert decode_response(body).stop_reason == stop


def test_decode_blocked_prompt() -> None:
    resp = decode_response(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE_META}
    )
    assert resp.content == ()
    assert resp.stop_reason == StopReason.content_filter


# Recorded-shape chunks of a streamGenerateContent?alt=sse answer (thinking, text, tool call).
STREAM_CHUNKS: list[dict[str, Any]] = [
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "Plan: call it.", "thought": True}],
                    "role": "model",
                },
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 1200, "totalTokenCount": 1200},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "sr1",
    },
    {
        "candidates": [{"content": {"parts": [{"text": "Sure"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 1200, "totalTokenCount": 1200},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "sr1",
    },
    {
        "candidates": [
            {"content": {"parts": [{"text": ", checking."}], "role": "model"}, "index": 0}
        ],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "sr1",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": USAGE_META,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "sr1",
    },
]


def test_stream_decoder_events() -> None:
    decoder = GeminiStreamDecoder(ToolNameMap(["get_weather"]))
    events = [e for chunk in STREAM_CHUNKS for e in decoder.feed(chunk)]
    events += decoder.finish()
    usage = decode_usage(USAGE_META)
    assert events == [
        MessageStart(id="sr1", model="gemini-2.5-flash"),
        BlockStart(index=0, kind="thinking", origin="gemini"),
        ThinkingDelta(index=0, text="Plan: call it."),
        BlockStop(index=0),
        BlockStart(index=1, kind="text"),
        TextDelta(index=1, text="Sure"),
        TextDelta(index=1, text=", checking."),
        BlockStop(index=1),
        BlockStart(index=2, kind="tool_call", tool_call_id="call_sr1_0", tool_name="get_weather"),
        ToolArgsDelta(index=2, partial_json='{"city":"Paris"}'),
        BlockStop(index=2),
        MessageDelta(stop_reason=StopReason.tool_use, usage=usage, raw_stop_reason="STOP"),
        MessageStop(),
    ]
    acc = StreamAccumulator("gemini")
    for event in events:
        acc.add(event)
    resp = acc.response()
    assert resp.usage == usage
    assert resp.stop_reason == StopReason.tool_use


def test_stream_decoder_cut_short_and_error() -> None:
    decoder = GeminiStreamDecoder()
    events = decoder.feed(STREAM_CHUNKS[1]) + decoder.finish()
    assert isinstance(events[-1], StreamError)
    assert isinstance(events[-2], BlockStop)
    decoder = GeminiStreamDecoder()
    error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    assert decoder.feed(error) == [StreamError(type="RESOURCE_EXHAUSTED", message="quota")]
    assert decoder.finish() == []
