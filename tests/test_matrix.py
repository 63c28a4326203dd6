"""The any-to-any matrix: 3 ingress formats x 3 upstream types x {JSON, SSE} x {text, image}.

Each cell drives routerd with the official SDK of its ingress format, checks the answer the SDK
assembles (its stream helpers must give the same text as the JSON call), that the upstream got
the image in its own wire format, and the journal line's usage and exact cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml
from aiohttp.test_utils import TestServer

from routerd.metrics import Metrics
from routerd.server.app import build_app
from routerd.server.gateway import Gateway
from tests import fakes, fakes_anthropic, fakes_gemini
from tests.conftest import FULL_KEY, Routerd, write_config
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


class Upstreams:
    def __init__(self, openai_: FakeOpenAI, anthropic_: FakeAnthropic, gemini_: FakeGemini) -> None:
        self.fakes = {"openai": openai_, "anthropic": anthropic_, "gemini": gemini_}

    def last_body(self, name: str) -> dict[str, Any]:
        fake = self.fakes[name]
        if isinstance(fake, FakeOpenAI):
            return fake.last.body
        return fake.requests[-1]["body"]  # type: ignore[no-any-return]


@pytest.fixture
async def matrix(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> AsyncIterator[tuple[Routerd, Upstreams]]:
    anth = FakeAnthropic(api_key="anth-secret")
    gem = FakeGemini(api_key="gem-secret")
    await anth.start()
    await gem.start()
    config_path = write_config(tmp_path / "cfg", fake_upstream.base_url)
    daemon = yaml.safe_load(config_path.read_text())
    daemon["max_body_bytes"] = 1_048_576
    config_path.write_text(yaml.safe_dump(daemon))
    path = config_path.parent / "providers.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["providers"]["anth"] = {
        "type": "anthropic",
        "base_url": anth.base_url,
        "api_key": "anth-secret",
    }
    doc["providers"]["gem"] = {"type": "gemini", "base_url": gem.base_url, "api_key": "gem-secret"}
    doc["models"]["anth/claude-test"] = {
        "pricing": {"prompt": 3, "completion": 15, "cached_prompt": 0.3, "cache_write": 3.75},
        "max_output_tokens": 8192,
        "deployments": [{"provider": "anth", "model": "claude-upstream"}],
    }
    doc["models"]["gem/gemini-test"] = {
        "pricing": {"prompt": 0.30, "completion": 2.50, "cached_prompt": 0.03},
        "deployments": [{"provider": "gem", "model": "gemini-upstream"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    gateway = Gateway.load(config_path, Metrics())
    server = TestServer(build_app(gateway), host="127.0.0.1")
    await server.start_server()
    try:
        yield (
            Routerd(tmp_path / "cfg", config_path, gateway, server, fake_upstream),
            Upstreams(fake_upstream, anth, gem),
        )
    finally:
        await server.close()
        await anth.close()
        await gem.close()


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
    matrix: tuple[Routerd, Upstreams], ingress: str, upstream: str, stream: bool, image: bool
) -> None:
    gw, ups = matrix
    model, reply, cost = UPSTREAMS[upstream]
    text = await CLIENTS[ingress](gw.url, model, stream, image)
    assert text == reply
    assert _has_image(upstream, ups.last_body(upstream)) is image
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["resolved_model"], line["stream"]) == (ingress, model, stream)
    assert (line["status"], line["error_code"]) == (200, None)
    assert line["cost_pico_usd"] == cost
