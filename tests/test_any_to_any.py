"""Any-to-any through routerd: both SDKs as clients, fake OpenAI and Anthropic upstreams.

Each test asserts what a user sees (SDK objects, error classes) and what the upstream received,
plus the journal line with usage and exact cost.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests import fakes, fakes_anthropic
from tests.conftest import ANTHROPIC_SECRET, Routerd
from tests.fakes_anthropic import FakeAnthropic

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}

# fake Anthropic usage: 1200 plain input + 200 cache read + 100 cache write, 50 output,
# at 3 / 15 / 0.30 / 3.75 USD per 1M tokens
ANTHROPIC_COST = 1200 * 3_000_000 + 200 * 300_000 + 100 * 3_750_000 + 50 * 15_000_000
# fake OpenAI usage: 1200 prompt incl. 200 cached, 50 completion, at 0.40 / 1.60 / 0.10
OPENAI_COST = 1000 * 400_000 + 200 * 100_000 + 50 * 1_600_000


async def test_messages_ingress_to_openai_upstream(
    gw: Routerd, claude: anthropic.AsyncAnthropic
) -> None:
    message = await claude.messages.create(
        model="fake/gpt-test",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == fakes.REPLY_TEXT
    assert message.stop_reason == "end_turn"
    # Anthropic semantics: input_tokens excludes cache reads
    assert message.usage.input_tokens == 1000
    assert message.usage.cache_read_input_tokens == 200
    assert message.usage.output_tokens == 50
    sent = gw.fake.last.body
    assert sent["model"] == "gpt-upstream"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    (line,) = await gw.wait_journal(1)
    assert line["ingress"] == "messages"
    assert (line["prompt_tokens"], line["cached_tokens"], line["completion_tokens"]) == (
        1200,
        200,
        50,
    )
    assert line["cost_pico_usd"] == OPENAI_COST


async def test_messages_stream_to_openai_upstream(
    gw: Routerd, claude: anthropic.AsyncAnthropic
) -> None:
    async with claude.messages.stream(
        model="fake/gpt-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == fakes.REPLY_TEXT
    assert final.content[0].type == "text"
    assert final.content[0].text == fakes.REPLY_TEXT
    assert final.usage.output_tokens == 50
    (line,) = await gw.wait_journal(1)
    assert line["stream"] is True
    assert line["cost_pico_usd"] == OPENAI_COST


async def test_messages_passthrough_keeps_beta_header_and_unknown_fields(
    gw: Routerd, claude: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    message = await claude.messages.create(
        model="anth/claude-test",
        max_tokens=1000,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "context-management-2025-06-27,oauth-2025-04-20"},
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == fakes_anthropic.REPLY_TEXT
    received = fake_anthropic.requests[-1]
    assert received["headers"]["anthropic-beta"] == (
        "context-management-2025-06-27,oauth-2025-04-20"
    )
    assert received["headers"]["x-api-key"] == ANTHROPIC_SECRET
    assert received["body"]["model"] == "claude-upstream"
    assert received["body"]["context_management"] == {
        "edits": [{"type": "clear_tool_uses_20250919"}]
    }
    (line,) = await gw.wait_journal(1)
    assert line["prompt_tokens"] == 1500
    assert (line["cached_tokens"], line["cache_write_tokens"]) == (200, 100)
    assert line["cost_pico_usd"] == ANTHROPIC_COST


async def test_messages_passthrough_stream_meters_usage(
    gw: Routerd, claude: anthropic.AsyncAnthropic
) -> None:
    async with claude.messages.stream(
        model="anth/claude-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == fakes_anthropic.REPLY_TEXT
    (line,) = await gw.wait_journal(1)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (1500, 50)
    assert line["cost_pico_usd"] == ANTHROPIC_COST


async def test_chat_ingress_to_anthropic_upstream(
    gw: Routerd, oai: openai.AsyncOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    reply = await oai.chat.completions.create(
        model="anth/claude-test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
    )
    assert reply.choices[0].message.content == fakes_anthropic.REPLY_TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 1500
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 200
    body = fake_anthropic.requests[-1]["body"]
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert body["max_tokens"] == 8192  # the catalog default: chat sent none
    (line,) = await gw.wait_journal(1)
    assert line["ingress"] == "chat_completions"
    assert line["provider"] == "anth"
    assert line["cost_pico_usd"] == ANTHROPIC_COST


async def test_chat_stream_to_anthropic_upstream(gw: Routerd, oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="anth/claude-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(text) == fakes_anthropic.REPLY_TEXT
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1500, 50)
    (line,) = await gw.wait_journal(1)
    assert line["cost_pico_usd"] == ANTHROPIC_COST


async def test_chat_tool_round_trip_through_anthropic(
    oai: openai.AsyncOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    first = await oai.chat.completions.create(
        model="anth/claude-test",
        messages=[{"role": "user", "content": "please use the tool"}],
        tools=TOOLS,  # type: ignore[arg-type]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == fakes_anthropic.TOOL_INPUT
    second = await oai.chat.completions.create(
        model="anth/claude-test",
        messages=[
            {"role": "user", "content": "please use the tool"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert second.choices[0].message.content == fakes_anthropic.REPLY_TEXT
    sent = fake_anthropic.requests[-1]["body"]["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    assert sent[1]["content"][0]["id"] == call.id
    result = sent[2]["content"][0]
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == call.id


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("529", 529, "provider_overloaded"),
        ("401", 502, "provider_auth"),
        ("429", 429, "provider_rate_limit"),
        ("400-context", 400, "context_length_exceeded"),
    ],
)
async def test_anthropic_upstream_errors_in_each_envelope(
    gw: Routerd,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    fake_anthropic: FakeAnthropic,
    mode: str,
    status: int,
    code: str,
) -> None:
    fake_anthropic.mode = mode
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.APIStatusError) as oai_error:
        await oai.chat.completions.create(model="anth/claude-test", messages=messages)
    assert oai_error.value.status_code == status
    assert isinstance(oai_error.value.body, dict)
    assert oai_error.value.body["code"] == code
    with pytest.raises(anthropic.APIStatusError) as claude_error:
        await claude.messages.create(model="anth/claude-test", max_tokens=10, messages=messages)
    assert claude_error.value.status_code == status
    body = claude_error.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["code"] == code
    lines = await gw.wait_journal(2)
    assert [(line["status"], line["error_code"]) for line in lines] == [(status, code)] * 2


async def test_messages_passthrough_clamps_max_tokens_to_catalog(
    claude: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    # Claude Code asks for 128000; the catalog caps this model at 8192
    async with claude.messages.stream(
        model="anth/claude-test", max_tokens=128000, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        await stream.get_final_message()
    assert fake_anthropic.requests[-1]["body"]["max_tokens"] == 8192


async def test_responses_function_call_round_trip_through_anthropic(
    gw: Routerd, oai: openai.AsyncOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake = fake_anthropic
    first = await oai.responses.create(
        model="anth/claude-test", input="please use the tool", tools=[WEATHER_TOOL]
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == fakes_anthropic.TOOL_INPUT
    second = await oai.responses.create(
        model="anth/claude-test",
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "please use the tool"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == fakes_anthropic.REPLY_TEXT
    sent = fake.requests[-1]["body"]["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    assert sent[2]["content"][0]["tool_use_id"] == calls[0].call_id
    lines = await gw.wait_journal(2)
    assert all(line["cost_pico_usd"] == ANTHROPIC_COST for line in lines)


async def test_count_tokens_from_anthropic_upstream(
    gw: Routerd, claude: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    count = await claude.messages.count_tokens(
        model="anth/claude-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert count.input_tokens == fakes_anthropic.COUNT_TOKENS
    sent = fake_anthropic.requests[-1]
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"]["model"] == "claude-upstream"
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["status"], line["cost_pico_usd"]) == ("count_tokens", 200, 0)


async def test_count_tokens_falls_back_to_the_estimate_when_the_upstream_is_overloaded(
    gw: Routerd, claude: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.mode = "529"
    text = "x" * 400
    raw = await claude.messages.with_raw_response.count_tokens(
        model="anth/claude-test", messages=[{"role": "user", "content": text}]
    )
    assert (await raw.parse()).input_tokens == 104  # the estimate, not the upstream's 529
    assert raw.headers["x-routerd-token-count"] == "estimate"
    assert fake_anthropic.requests[-1]["path"] == "/v1/messages/count_tokens"
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["status"]) == ("count_tokens", 200)


async def test_count_tokens_estimate_for_other_upstreams(claude: anthropic.AsyncAnthropic) -> None:
    text = "x" * 400  # 400 UTF-8 bytes -> 100 tokens, plus 4 framing tokens for one message
    count = await claude.messages.count_tokens(
        model="fake/gpt-test", messages=[{"role": "user", "content": text}]
    )
    assert count.input_tokens == 104


@pytest.mark.parametrize(
    ("mode", "status", "error_type", "code"),
    [
        ("401", 502, "api_error", "provider_auth"),
        ("429", 429, "rate_limit_error", "provider_rate_limit"),
        ("500", 502, "api_error", "provider_unavailable"),
        ("context_length", 400, "invalid_request_error", "context_length_exceeded"),
    ],
)
async def test_openai_upstream_errors_in_anthropic_envelope(
    gw: Routerd,
    claude: anthropic.AsyncAnthropic,
    mode: str,
    status: int,
    error_type: str,
    code: str,
) -> None:
    gw.fake.mode = mode
    with pytest.raises(anthropic.APIStatusError) as info:
        await claude.messages.create(
            model="fake/gpt-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert (body["error"]["type"], body["error"]["code"]) == (error_type, code)


async def test_tuning_fields_dropped_across_formats_are_counted(
    gw: Routerd, claude: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await claude.messages.create(
        model="fake/gpt-test",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": '{"session": "abc"}'},
    )
    sent = gw.fake.last.body
    assert "cache_control" not in json.dumps(sent)
    metrics = await gw.metrics_text(http)
    dropped = [
        line
        for line in metrics.splitlines()
        if line.startswith("routerd_dropped_fields_total{") and 'ingress="messages"' in line
    ]
    assert dropped, metrics
    assert all(float(line.rsplit(" ", 1)[1]) >= 1 for line in dropped)
