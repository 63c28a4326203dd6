"""Chat Completions through routerd with the official openai SDK against a fake upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import pytest

from routerd.metrics import Metrics
from routerd.server.gateway import Gateway
from tests.conftest import FULL_KEY, UPSTREAM_SECRET, Routerd, read_journal, write_config
from tests.fakes import REPLY_TEXT, STREAM_PIECES, USAGE, FakeOpenAI
from tests.serving import RouterdServer

MESSAGES = [{"role": "user", "content": "hi"}]
# fake/gpt-test prices in pico-USD per token: prompt 0.40, cached 0.10, completion 1.60 USD / 1M
EXPECTED_COST = (1200 - 200) * 400_000 + 200 * 100_000 + 50 * 1_600_000


async def test_non_streaming(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake/gpt-test",
        messages=MESSAGES,
        extra_body={"custom_field": 1},
        extra_headers={"X-Request-Id": "my-req-42"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1200
    assert completion.usage.completion_tokens == 50
    assert raw.headers["x-routerd-provider"] == "fake"
    assert raw.headers["x-routerd-model"] == "fake/gpt-test"
    assert raw.headers["X-Request-Id"] == "my-req-42"

    got = routerd.fake.last
    assert got.body["model"] == "gpt-upstream"
    assert got.body["custom_field"] == 1
    assert got.body["messages"] == MESSAGES
    assert got.headers["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert FULL_KEY not in str(got.headers)


async def test_request_id_generated(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="echo/echo-1", messages=MESSAGES
    )
    assert raw.headers["X-Request-Id"]
    assert raw.headers["x-routerd-model"] == "echo/echo-1"


async def test_alias_journal_line(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fast", messages=MESSAGES, extra_headers={"X-Request-Id": "journal-1"}
    )
    assert raw.headers["x-routerd-model"] == "fake/gpt-test"
    (line,) = await routerd.wait_journal(1)
    assert line["request_id"] == "journal-1"
    expected = {
        "key_id": "full",
        "user": "alice",
        "tags": ["search", "team-a"],
        "ingress": "chat_completions",
        "model": "fast",
        "resolved_model": "fake/gpt-test",
        "provider": "fake",
        "upstream_model": "gpt-upstream",
        "stream": False,
        "status": 200,
        "error_code": None,
        "prompt_tokens": 1200,
        "completion_tokens": 50,
        "cached_tokens": 200,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_pico_usd": EXPECTED_COST,
        "attempts": 1,
        "config_generation": 1,
    }
    assert {k: line[k] for k in expected} == expected
    assert EXPECTED_COST == 500_000_000
    assert line["cost_usd"] == 0.0005
    assert isinstance(line["latency_ms"], int)
    assert line["ts"].endswith("Z")


async def test_stream_without_usage(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fake/gpt-test", messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(STREAM_PIECES)
    assert all(c.choices for c in chunks), "the usage-only chunk must not reach the client"
    assert all(c.usage is None for c in chunks)
    sent = routerd.fake.last.body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-upstream"
    (line,) = await routerd.wait_journal(1)
    assert line["stream"] is True
    assert line["status"] == 200
    assert line["prompt_tokens"] == USAGE["prompt_tokens"]
    assert line["completion_tokens"] == USAGE["completion_tokens"]
    assert line["cached_tokens"] == 200
    assert line["cost_pico_usd"] == EXPECTED_COST
    assert line["ttft_ms"] is not None


async def test_stream_with_usage(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fast",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(STREAM_PIECES)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == 1200
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 200
    (line,) = await routerd.wait_journal(1)
    assert line["model"] == "fast"
    assert line["resolved_model"] == "fake/gpt-test"
    assert line["cost_pico_usd"] == EXPECTED_COST


async def test_echo_stream(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo/echo-1", messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks


@pytest.mark.parametrize("ingress", ["chat/completions", "messages"])
async def test_stream_headers_do_not_wait_for_a_slow_first_frame(
    routerd: Routerd, ingress: str
) -> None:
    """The 200 and its headers reach the client while the upstream has sent no frame yet (the
    relay only holds them back to share a write with a frame that is already there)."""
    routerd.fake.mode = "slow_first_frame"
    body = {"model": "fake/gpt-test", "max_tokens": 64, "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{routerd.url}/v1/{ingress}",
            json=body,
            headers={"Authorization": f"Bearer {FULL_KEY}", "x-api-key": FULL_KEY},
        ) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert routerd.fake.frames_sent == 0
        routerd.fake.release.set()
        text = (await resp.read()).decode()
    last = "data: [DONE]" if ingress == "chat/completions" else 'data: {"type":"message_stop"}'
    assert text.endswith(f"{last}\n\n")
    assert routerd.fake.frames_sent > 0


async def test_client_disconnect_mid_stream(routerd: Routerd) -> None:
    routerd.fake.mode = "slow_stream"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{routerd.url}/v1/chat/completions",
            json={"model": "fake/gpt-test", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {FULL_KEY}"},
        ) as resp,
    ):
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
    (line,) = await routerd.wait_journal(1)
    assert line["status"] == 499
    assert line["stream"] is True


async def test_shutdown_lets_a_stream_in_flight_finish_and_meters_it(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    """SIGTERM's path (`RunningGateway.close`): new connections are refused at once, the stream
    already answering finishes whole within the grace, and its journal line is flushed."""
    config_path = write_config(tmp_path / "cfg", fake_upstream.base_url)
    server = RouterdServer(Gateway.load(config_path, Metrics()))
    await server.start_server()
    fake_upstream.mode = "slow_first_frame"
    body = {"model": "fake/gpt-test", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            str(server.make_url("/v1/chat/completions")),
            json=body,
            headers={"Authorization": f"Bearer {FULL_KEY}"},
        ) as resp:
            assert resp.status == 200
            closing = asyncio.create_task(server.close())
            await asyncio.sleep(0.05)  # let close() stop the listener first
            assert not closing.done()  # it waits for the stream in flight
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as other:
                    await other.get(str(server.make_url("/healthz")))
            fake_upstream.release.set()
            text = (await resp.read()).decode()
        await closing
    assert text.endswith("data: [DONE]\n\n")
    lines = read_journal(tmp_path / "cfg" / "usage")
    assert [(line["status"], line["stream"]) for line in lines] == [(200, True)]
    assert lines[0]["completion_tokens"] > 0
