"""The gemini upstream through routerd: Chat, Messages and Responses ingress via the official
SDKs against a fake Gemini API (generateContent / streamGenerateContent?alt=sse)."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests import fakes_gemini
from tests.conftest import GEMINI_SECRET, Routerd
from tests.fakes_gemini import FakeGemini
from tests.test_any_to_any import TOOLS

# fake usage: 1200 prompt incl. 300 cached, 40 candidates + 10 thoughts; 0.30 / 2.50 / 0.03
GEMINI_COST = 900 * 300_000 + 300 * 30_000 + 50 * 2_500_000


async def test_chat_to_gemini(
    gw: Routerd, oai: openai.AsyncOpenAI, fake_gemini: FakeGemini
) -> None:
    reply = await oai.chat.completions.create(
        model="gem/gemini-test",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    assert reply.choices[0].message.content == fakes_gemini.REPLY_TEXT
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1200, 50)
    call = fake_gemini.last
    assert call["path"] == "/v1beta/models/gemini-upstream:generateContent"
    assert call["headers"]["x-goog-api-key"] == GEMINI_SECRET
    assert call["body"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    (line,) = await gw.wait_journal(1)
    assert (line["cached_tokens"], line["reasoning_tokens"]) == (300, 10)
    assert line["cost_pico_usd"] == GEMINI_COST


async def test_messages_stream_to_gemini(
    gw: Routerd, claude: anthropic.AsyncAnthropic, fake_gemini: FakeGemini
) -> None:
    async with claude.messages.stream(
        model="gem/gemini-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = await stream.get_final_message()
    texts = [block.text for block in final.content if block.type == "text"]
    assert texts == [fakes_gemini.REPLY_TEXT]
    assert fake_gemini.last["path"] == "/v1beta/models/gemini-upstream:streamGenerateContent"
    assert fake_gemini.last["query"] == {"alt": "sse"}
    (line,) = await gw.wait_journal(1)
    assert line["cost_pico_usd"] == GEMINI_COST


async def test_chat_tool_round_trip_through_gemini(
    oai: openai.AsyncOpenAI, fake_gemini: FakeGemini
) -> None:
    first = await oai.chat.completions.create(
        model="gem/gemini-test",
        messages=[{"role": "user", "content": "please use the tool"}],
        tools=TOOLS,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == fakes_gemini.TOOL_ARGS
    await oai.chat.completions.create(
        model="gem/gemini-test",
        messages=[
            {"role": "user", "content": "please use the tool"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=TOOLS,
    )
    contents = fake_gemini.last["body"]["contents"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


async def test_responses_stream_to_gemini(gw: Routerd, oai: openai.AsyncOpenAI) -> None:
    async with oai.responses.stream(model="gem/gemini-test", input="hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == fakes_gemini.REPLY_TEXT
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens == 10


async def test_gemini_rate_limit_in_both_envelopes(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, fake_gemini: FakeGemini
) -> None:
    fake_gemini.mode = "429"
    with pytest.raises(openai.RateLimitError) as oai_error:
        await oai.chat.completions.create(
            model="gem/gemini-test", messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(oai_error.value.body, dict)
    assert oai_error.value.body["code"] == "provider_rate_limit"
    with pytest.raises(anthropic.RateLimitError) as claude_error:
        await claude.messages.create(
            model="gem/gemini-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(claude_error.value.body, dict)
    assert claude_error.value.body["error"]["type"] == "rate_limit_error"
