"""The fake Gemini upstream answers requests built by `GeminiAdapter`, and routerd's Gemini
decoders read its answers (JSON and SSE) correctly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from routerd.config.model import ProviderConfig, Timeouts
from routerd.errors import ErrorCode
from routerd.formats.accumulate import StreamAccumulator
from routerd.formats.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Message,
    StopReason,
    StreamEvent,
    TextPart,
    Tool,
    ToolCallPart,
    ToolNameMap,
)
from routerd.formats.gemini import decode_response, decode_usage, encode_request
from routerd.formats.gemini_stream import GeminiStreamDecoder
from routerd.formats.sse import SSEParser
from routerd.providers.base import UpstreamRequest
from routerd.providers.gemini import GeminiAdapter
from tests.fakes_gemini import REPLY_TEXT, TOOL_ARGS, USAGE, FakeGemini

API_KEY = "gemini-test-key"
MODEL = "gemini-2.5-flash"
TOOL = Tool(
    name="get_weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = FakeGemini(api_key=API_KEY)
    await server.start()
    yield server
    await server.close()


def adapter(base_url: str, api_key: str = API_KEY) -> GeminiAdapter:
    config = ProviderConfig(
        name="g",
        type="gemini",  # type: ignore[arg-type]
        base_url=base_url,
        api_key=api_key,
        headers=(),
        pool_size=4,
        timeouts=Timeouts(),
        api_version=None,
        enabled=True,
        disabled_reason=None,
    )
    return GeminiAdapter(config)


def request(text: str, stream: bool = False) -> CanonicalRequest:
    return CanonicalRequest(
        model="public/model",
        messages=(Message(role="user", content=(TextPart(text=text),)),),
        tools=(TOOL,),
        stream=stream,
    )


async def send(up: UpstreamRequest) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(up.url, data=up.body, headers=up.headers) as resp,
    ):
        return resp.status, await resp.read()


async def test_start_returns_v1beta_url() -> None:
    server = FakeGemini()
    url = await server.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1beta")
    finally:
        await server.close()


async def test_generate_content_round_trip(fake: FakeGemini) -> None:
    req = request("hi")
    names = ToolNameMap.for_request(req)
    body, _ = encode_request(req, names, None)
    up = adapter(fake.base_url).build_request(MODEL, body, False)
    assert up.url == f"{fake.base_url}/models/{MODEL}:generateContent"
    status, raw = await send(up)
    assert status == 200
    got = fake.last
    assert got["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert got["headers"]["x-goog-api-key"] == API_KEY
    assert "model" not in got["body"]
    assert got["body"]["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    resp = decode_response(orjson.loads(raw), names)
    assert resp.content == (TextPart(text=REPLY_TEXT),)
    assert resp.stop_reason == StopReason.end_turn
    assert resp.usage == decode_usage(USAGE)
    assert resp.usage.cached_tokens == USAGE["cachedContentTokenCount"]
    assert resp.usage.reasoning_tokens == USAGE["thoughtsTokenCount"]


async def test_generate_content_tool_call(fake: FakeGemini) -> None:
    req = request("please use the tool")
    names = ToolNameMap.for_request(req)
    body, _ = encode_request(req, names, None)
    status, raw = await send(adapter(fake.base_url).build_request(MODEL, body, False))
    assert status == 200
    resp = decode_response(orjson.loads(raw), names)
    assert resp.stop_reason == StopReason.tool_use
    (call,) = resp.content
    assert isinstance(call, ToolCallPart)
    assert call.name == "get_weather"
    assert orjson.loads(call.arguments) == TOOL_ARGS


async def stream_events(fake: FakeGemini, text: str) -> list[StreamEvent]:
    req = request(text, stream=True)
    names = ToolNameMap.for_request(req)
    body, _ = encode_request(req, names, None)
    up = adapter(fake.base_url).build_request(MODEL, body, True)
    assert up.url.endswith(f"/models/{MODEL}:streamGenerateContent?alt=sse")
    decoder, parser = GeminiStreamDecoder(names), SSEParser()
    events: list[StreamEvent] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(up.url, data=up.body, headers=up.headers) as resp,
    ):
        assert resp.status == 200
        async for chunk in resp.content.iter_any():
            for sse in parser.feed(chunk):
                events += decoder.feed(sse.json())
    for sse in parser.close():
        events += decoder.feed(sse.json())
    events += decoder.finish()
    assert fake.last["query"] == {"alt": "sse"}
    return events


def accumulate(events: list[StreamEvent]) -> CanonicalResponse:
    acc = StreamAccumulator("gemini")
    for event in events:
        acc.add(event)
    assert acc.error is None
    return acc.response()


async def test_stream_text(fake: FakeGemini) -> None:
    resp = accumulate(await stream_events(fake, "hi"))
    assert resp.content == (TextPart(text=REPLY_TEXT),)
    assert resp.stop_reason == StopReason.end_turn
    assert resp.usage == decode_usage(USAGE)


async def test_stream_tool_call(fake: FakeGemini) -> None:
    resp = accumulate(await stream_events(fake, "Use the tool now"))
    assert resp.stop_reason == StopReason.tool_use
    (call,) = resp.content
    assert isinstance(call, ToolCallPart)
    assert orjson.loads(call.arguments) == TOOL_ARGS


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("429", 429, ErrorCode.provider_rate_limit),
        ("500", 500, ErrorCode.provider_unavailable),
        ("400", 400, ErrorCode.invalid_request),
    ],
)
async def test_error_modes_classified(
    fake: FakeGemini, mode: str, status: int, code: ErrorCode
) -> None:
    fake.mode = mode
    body, _ = encode_request(request("hi"), None, None)
    up = adapter(fake.base_url)
    got_status, raw = await send(up.build_request(MODEL, body, False))
    assert got_status == status
    assert orjson.loads(raw)["error"]["code"] == status
    assert up.classify_error(got_status, raw, {}).code == code


async def test_bad_key_is_provider_auth(fake: FakeGemini) -> None:
    body, _ = encode_request(request("hi"), None, None)
    up = adapter(fake.base_url, api_key="wrong")
    got_status, raw = await send(up.build_request(MODEL, body, False))
    assert got_status == 400
    assert up.classify_error(got_status, raw, {}).code == ErrorCode.provider_auth
