"""Tool-call round trips across the matrix: 3 ingress formats x 3 upstream types x JSON/SSE.

Turn 1 asks the model to use a tool; the SDK (its stream helper for SSE) must assemble the call
with the same name and arguments. Turn 2 sends the tool result back; the upstream must receive
it in its own wire format, linked to the call, and the answer is the upstream's text.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests import fakes, fakes_anthropic, fakes_gemini
from tests.conftest import FULL_KEY, Routerd
from tests.fakes_anthropic import FakeAnthropic
from tests.fakes_gemini import FakeGemini
from tests.test_any_to_any import ANTHROPIC_COST, OPENAI_COST
from tests.test_any_to_any_gemini import GEMINI_COST

ASK = "please use the tool"
ARGS = {"city": "Paris"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
UPSTREAMS = {
    "openai": ("fake/gpt-test", fakes.REPLY_TEXT, OPENAI_COST),
    "anthropic": ("anth/claude-test", fakes_anthropic.REPLY_TEXT, ANTHROPIC_COST),
    "gemini": ("gem/gemini-test", fakes_gemini.REPLY_TEXT, GEMINI_COST),
}
Call = tuple[str, str, dict[str, Any]]  # id, name, arguments


async def _chat(url: str, model: str, stream: bool) -> tuple[Call, str]:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    messages: list[Any] = [{"role": "user", "content": ASK}]
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        if stream:
            async with sdk.chat.completions.stream(
                model=model, messages=messages, tools=tools
            ) as events:
                first = await events.get_final_completion()
        else:
            first = await sdk.chat.completions.create(model=model, messages=messages, tools=tools)
        message = first.choices[0].message
        assert message.tool_calls
        tc = message.tool_calls[0]
        assert tc.type == "function"
        call = (tc.id, tc.function.name, json.loads(tc.function.arguments))
        messages += [
            {"role": "assistant", "tool_calls": [tc.model_dump()]},
            {"role": "tool", "tool_call_id": tc.id, "content": "sunny"},
        ]
        second = await sdk.chat.completions.create(model=model, messages=messages, tools=tools)
        return call, second.choices[0].message.content or ""


async def _messages(url: str, model: str, stream: bool) -> tuple[Call, str]:
    tools: Any = [{"name": "get_weather", "input_schema": SCHEMA}]
    messages: list[Any] = [{"role": "user", "content": ASK}]
    async with anthropic.AsyncAnthropic(base_url=url, api_key=FULL_KEY, max_retries=0) as sdk:
        kwargs: Any = {"model": model, "max_tokens": 200, "tools": tools}
        if stream:
            async with sdk.messages.stream(messages=messages, **kwargs) as events:
                first = await events.get_final_message()
        else:
            first = await sdk.messages.create(messages=messages, **kwargs)
        assert first.stop_reason == "tool_use"
        use = next(block for block in first.content if block.type == "tool_use")
        call = (use.id, use.name, dict(use.input))  # type: ignore[call-overload]
        messages += [
            {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ]
        second = await sdk.messages.create(messages=messages, **kwargs)
        return call, "".join(b.text for b in second.content if b.type == "text")


async def _responses(url: str, model: str, stream: bool) -> tuple[Call, str]:
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False}
    ]
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        if stream:
            async with sdk.responses.stream(model=model, input=ASK, tools=tools) as events:
                first = await events.get_final_response()
        else:
            first = await sdk.responses.create(model=model, input=ASK, tools=tools)
        fc = next(item for item in first.output if item.type == "function_call")
        call = (fc.call_id, fc.name, json.loads(fc.arguments))
        follow: Any = [
            {"role": "user", "content": ASK},
            {
                "type": "function_call",
                "call_id": fc.call_id,
                "name": fc.name,
                "arguments": fc.arguments,
            },
            {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"},
        ]
        second = await sdk.responses.create(model=model, input=follow, tools=tools)
        return call, second.output_text


def _result_reached_upstream(upstream: str, body: dict[str, Any], call_id: str) -> bool:
    if upstream == "openai":
        return any(
            m.get("role") == "tool" and m.get("tool_call_id") == call_id for m in body["messages"]
        )
    if upstream == "anthropic":
        return any(
            isinstance(block, dict)
            and block.get("type") == "tool_result"
            and block.get("tool_use_id") == call_id
            for m in body["messages"]
            if isinstance(m["content"], list)
            for block in m["content"]
        )
    return any(
        part.get("functionResponse", {}).get("name") == "get_weather"
        for content in body["contents"]
        for part in content["parts"]
    )


CLIENTS = {"chat_completions": _chat, "messages": _messages, "responses": _responses}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
@pytest.mark.parametrize("ingress", list(CLIENTS))
async def test_tool_round_trip(
    gw: Routerd,
    fake_anthropic: FakeAnthropic,
    fake_gemini: FakeGemini,
    ingress: str,
    upstream: str,
    stream: bool,
) -> None:
    model, reply, cost = UPSTREAMS[upstream]
    (call_id, name, arguments), text = await CLIENTS[ingress](gw.url, model, stream)
    assert (name, arguments) == ("get_weather", ARGS)
    assert text == reply
    if upstream == "openai":
        body = gw.fake.last.body
    else:
        fake = fake_anthropic if upstream == "anthropic" else fake_gemini
        body = fake.requests[-1]["body"]
    assert _result_reached_upstream(upstream, body, call_id)
    lines = await gw.wait_journal(2)
    assert [(line["status"], line["ingress"]) for line in lines] == [(200, ingress)] * 2
    assert [line["cost_pico_usd"] for line in lines] == [cost, cost]
