"""The any-to-any matrix: 3 ingress formats x 3 upstream types x {JSON, SSE} x {text, image}.

Each cell drives routerd with the official SDK of its ingress format, checks the answer the SDK
assembles (its stream helpers must give the same text as the JSON call), that the upstream got
the image in its own wire format, and the journal line's usage and exact cost.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests import fakes, fakes_anthropic, fakes_gemini
from tests.conftest import FULL_KEY, Routerd
from tests.fakes import FakeOpenAI
from tests.fakes_anthropic import FakeAnthropic
from tests.fakes_gemini import FakeGemini
from tests.test_any_to_any import ANTHROPIC_COST, OPENAI_COST
from tests.test_any_to_any_gemini import GEMINI_COST

PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
UPSTREAMS = {
    "openai": ("fake/gpt-test", fakes.REPLY_TEXT, OPENAI_COST),
    "anthropic": ("anth/claude-test", fakes_anthropic.REPLY_TEXT, ANTHROPIC_COST),
    "gemini": ("gem/gemini-test", fakes_gemini.REPLY_TEXT, GEMINI_COST),
}


def _last_body(
    upstream: str, fake_openai: FakeOpenAI, anth: FakeAnthropic, gem: FakeGemini
) -> dict[str, Any]:
    if upstream == "openai":
        return fake_openai.last.body
    fake = anth if upstream == "anthropic" else gem
    return fake.requests[-1]["body"]  # type: ignore[no-any-return]


def _chat_messages(image: bool) -> list[Any]:
    content: Any = "describe this"
    if image:
        content = [
            {"type": "text", "text": "describe this"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
    return [{"role": "user", "content": content}]


def _anthropic_messages(image: bool) -> list[Any]:
    content: Any = "describe this"
    if image:
        source = {"type": "base64", "media_type": "image/png", "data": PNG}
        content = [{"type": "text", "text": "describe this"}, {"type": "image", "source": source}]
    return [{"role": "user", "content": content}]


def _responses_input(image: bool) -> Any:
    if not image:
        return "describe this"
    parts = [
        {"type": "input_text", "text": "describe this"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
    ]
    return [{"role": "user", "content": parts}]


async def _chat(url: str, model: str, stream: bool, image: bool) -> str:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        if not stream:
            reply = await sdk.chat.completions.create(model=model, messages=_chat_messages(image))
            return reply.choices[0].message.content or ""
        chunks = await sdk.chat.completions.create(
            model=model, messages=_chat_messages(image), stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def _messages(url: str, model: str, stream: bool, image: bool) -> str:
    async with anthropic.AsyncAnthropic(base_url=url, api_key=FULL_KEY, max_retries=0) as sdk:
        kwargs: Any = {"model": model, "max_tokens": 200, "messages": _anthropic_messages(image)}
        if not stream:
            message = await sdk.messages.create(**kwargs)
        else:
            async with sdk.messages.stream(**kwargs) as events:
                message = await events.get_final_message()
        return "".join(block.text for block in message.content if block.type == "text")


async def _responses(url: str, model: str, stream: bool, image: bool) -> str:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        if not stream:
            response = await sdk.responses.create(model=model, input=_responses_input(image))
        else:
            async with sdk.responses.stream(model=model, input=_responses_input(image)) as events:
                response = await events.get_final_response()
        return response.output_text


def _has_image(upstream: str, body: dict[str, Any]) -> bool:
    if upstream == "openai":
        parts = body["messages"][-1]["content"]
        return any(p.get("type") == "image_url" for p in parts if isinstance(p, dict))
    if upstream == "anthropic":
        parts = body["messages"][-1]["content"]
        return any(p.get("type") == "image" for p in parts if isinstance(p, dict))
    parts = body["contents"][-1]["parts"]
    return any("inlineData" in p for p in parts)


CLIENTS = {"chat_completions": _chat, "messages": _messages, "responses": _responses}


@pytest.mark.parametrize("image", [False, True], ids=["text", "image"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
@pytest.mark.parametrize("ingress", list(CLIENTS))
async def test_cell(
    gw: Routerd,
    fake_anthropic: FakeAnthropic,
    fake_gemini: FakeGemini,
    ingress: str,
    upstream: str,
    stream: bool,
    image: bool,
) -> None:
    model, reply, cost = UPSTREAMS[upstream]
    text = await CLIENTS[ingress](gw.url, model, stream, image)
    assert text == reply
    body = _last_body(upstream, gw.fake, fake_anthropic, fake_gemini)
    assert _has_image(upstream, body) is image
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["resolved_model"], line["stream"]) == (ingress, model, stream)
    assert (line["status"], line["error_code"]) == (200, None)
    assert line["cost_pico_usd"] == cost
