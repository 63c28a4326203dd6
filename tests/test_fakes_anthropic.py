"""The fake Anthropic upstream is faithful: the official SDK parses everything it sends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import pytest

from tests.fakes_anthropic import REPLY_TEXT, TOOL_INPUT, USAGE, FakeAnthropic

API_KEY = "sk-ant-test-key"
MODEL = "claude-test-1"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=API_KEY)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    base = fake.base_url.removesuffix("/v1")
    sdk = anthropic.AsyncAnthropic(base_url=base, api_key=API_KEY, max_retries=0)
    yield sdk
    await sdk.close()


def assert_usage(usage: anthropic.types.Usage) -> None:
    assert usage.input_tokens == USAGE["input_tokens"]
    assert usage.output_tokens == USAGE["output_tokens"]
    assert usage.cache_creation_input_tokens == USAGE["cache_creation_input_tokens"]
    assert usage.cache_read_input_tokens == USAGE["cache_read_input_tokens"]


async def test_start_returns_v1_url() -> None:
    server = FakeAnthropic()
    url = await server.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
    finally:
        await server.close()


async def test_create_returns_message(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    msg = await client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.id.startswith("msg_")
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == MODEL
    assert len(msg.content) == 1
    assert msg.content[0].type == "text"
    assert msg.content[0].text == REPLY_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.stop_sequence is None
    assert_usage(msg.usage)

    got = fake.last
    assert got["body"]["max_tokens"] == 64
    assert got["body"]["messages"] == [{"role": "user", "content": "hi"}]
    # anthropic SDK >= 2 sends the key as a bearer token; older ones as x-api-key
    sent = got["headers"].get("x-api-key") or got["headers"]["authorization"].removeprefix(
        "Bearer "
    )
    assert sent == API_KEY
    assert "anthropic-version" in got["headers"]


async def test_stream_assembles_same_message(client: anthropic.AsyncAnthropic) -> None:
    pieces: list[str] = []
    event_types: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        async for event in stream:
            event_types.append(event.type)
            if event.type == "text":
                pieces.append(event.text)
        final = await stream.get_final_message()
    assert "".join(pieces) == REPLY_TEXT
    assert final.model == MODEL
    assert final.content[0].type == "text"
    assert final.content[0].text == REPLY_TEXT
    assert final.stop_reason == "end_turn"
    assert final.stop_sequence is None
    assert_usage(final.usage)
    assert event_types[0] == "message_start"
    assert event_types[-1] == "message_stop"


async def test_raw_stream_event_order(fake: FakeAnthropic) -> None:
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    body = {
        "model": MODEL,
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.base_url + "/messages", json=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    names = [
        line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event:")
    ]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


async def test_tool_use_create(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Please use the tool for Paris"}],
    )
    assert msg.stop_reason == "tool_use"
    block = msg.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_01")
    assert block.name == "get_weather"
    assert block.input == TOOL_INPUT


async def test_tool_use_stream(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": [{"type": "text", "text": "use the tool please"}]}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == TOOL_INPUT
    assert_usage(final.usage)


async def test_tools_without_trigger_reply_text(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "just chat"}],
    )
    assert msg.content[0].type == "text"
    assert msg.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("mode", "exc", "status", "error_type"),
    [
        ("401", anthropic.AuthenticationError, 401, "authentication_error"),
        ("429", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("529", anthropic.APIStatusError, 529, "overloaded_error"),
        ("500", anthropic.InternalServerError, 500, "api_error"),
        ("400-context", anthropic.BadRequestError, 400, "invalid_request_error"),
    ],
)
async def test_error_modes(
    fake: FakeAnthropic,
    client: anthropic.AsyncAnthropic,
    mode: str,
    exc: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
) -> None:
    fake.mode = mode
    with pytest.raises(exc) as info:
        await client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    err = info.value
    assert err.status_code == status
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["error"]["type"] == error_type
    assert err.request_id is not None and err.request_id.startswith("req_")
    if mode == "429":
        assert err.response.headers["retry-after"] == "1"
    if mode == "400-context":
        assert "prompt is too long" in err.body["error"]["message"]


async def test_error_modes_stream(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    fake.mode = "529"
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            await stream.get_final_message()
    assert info.value.status_code == 529


async def test_wrong_api_key(fake: FakeAnthropic) -> None:
    base = fake.base_url.removesuffix("/v1")
    sdk = anthropic.AsyncAnthropic(base_url=base, api_key="wrong", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await sdk.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await sdk.close()
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": info.value.request_id,
    }


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"x-api-key": API_KEY}, {"max_tokens": 8, "messages": [{}]}, "anthropic-version"),
        (
            {"authorization": f"Bearer {API_KEY}"},
            {"max_tokens": 8, "messages": [{}]},
            "anthropic-version",
        ),
        (
            {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
            {"messages": [{"role": "user", "content": "hi"}]},
            "max_tokens",
        ),
        (
            {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
            {"max_tokens": 8, "messages": []},
            "messages",
        ),
    ],
)
async def test_validation_errors(
    fake: FakeAnthropic, headers: dict[str, str], body: dict[str, object], message: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.base_url + "/messages", json=body, headers=headers) as resp,
    ):
        assert resp.status == 400
        data = await resp.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == "invalid_request_error"
    assert message in data["error"]["message"]
    assert data["request_id"].startswith("req_")


async def test_raw_x_api_key_accepted(fake: FakeAnthropic) -> None:
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.base_url + "/messages", json=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    assert data["content"] == [{"type": "text", "text": REPLY_TEXT}]
    assert data["usage"] == USAGE
