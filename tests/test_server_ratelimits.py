"""Rate limits end to end with an injected clock: rpm, tpm and concurrency per key, shared user
and tag limits, the exact `x-ratelimit-*` / `retry-after` headers on successes, streams and 429s."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import yaml
from multidict import CIMultiDict

from tests.conftest import Routerd, key_hash, serve_config
from tests.fakes import FakeOpenAI

KEY_A = "sk-rd-test-limited-a-0123456789ab"
KEY_B = "sk-rd-test-limited-b-0123456789ab"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def add_keys(config_path: Path, rate_limits: dict[str, Any] | None = None, **limits: int) -> None:
    path = config_path.parent / "keys.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["keys"] += [
        {"id": "a", "hash": key_hash(KEY_A), "user": "dave", "tags": ["ops"], "limits": limits},
        {"id": "b", "hash": key_hash(KEY_B), "user": "dave", "tags": ["ops"]},
    ]
    if rate_limits:
        doc["rate_limits"] = rate_limits
    path.write_text(yaml.safe_dump(doc))


async def post_chat(
    http: aiohttp.ClientSession, rd: Routerd, key: str, **extra: Any
) -> tuple[int, CIMultiDict[str], Any]:
    body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}], **extra}
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{rd.url}/v1/chat/completions", json=body, headers=headers) as resp:
        payload = await resp.read()
        return resp.status, CIMultiDict(resp.headers), payload


async def test_rpm_headers_count_down_then_429_with_retry_after_and_refill(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    add_keys(cfg, rpm=2)
    clock = Clock()
    async with serve_config(cfg, fake_upstream, clock) as rd, aiohttp.ClientSession() as http:
        status, headers, _ = await post_chat(http, rd, KEY_A)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "1"
        assert headers["x-ratelimit-reset-requests"] == "30s"
        status, headers, _ = await post_chat(http, rd, KEY_A, stream=True)
        assert status == 200 and headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"] == "1m0s"
        status, headers, _ = await post_chat(http, rd, KEY_A)
        assert status == 429
        assert headers["retry-after"] == "30" and headers["retry-after-ms"] == "30000"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert len(fake_upstream.requests) == 2  # the refused one never went upstream
        status, _, _ = await post_chat(http, rd, KEY_B)  # another key, no limits
        assert status == 200
        clock.now += 30  # one request's worth refilled
        status, headers, _ = await post_chat(http, rd, KEY_A)
        assert status == 200 and headers["x-ratelimit-remaining-requests"] == "0"
        text = await rd.metrics_text(http)
        assert 'routerd_rate_limited_total{scope="key"} 1.0' in text
        lines = await rd.wait_journal(5)
        assert [line["status"] for line in lines].count(429) == 1
        (refused,) = [line for line in lines if line["status"] == 429]
        assert refused["error_code"] == "rate_limit_exceeded" and refused["key_id"] == "a"


async def test_openai_sdk_sees_rate_limit_error_and_anthropic_sdk_its_envelope(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    add_keys(cfg, rpm=1)
    async with serve_config(cfg, fake_upstream, Clock()) as rd:
        async with openai.AsyncOpenAI(api_key=KEY_A, base_url=f"{rd.url}/v1", max_retries=0) as oai:
            await oai.chat.completions.create(
                model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}]
            )
            with pytest.raises(openai.RateLimitError) as caught:
                await oai.chat.completions.create(
                    model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}]
                )
        assert caught.value.response.headers["retry-after"] == "60"
        assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        claude = anthropic.AsyncAnthropic(api_key=KEY_A, base_url=rd.url, max_retries=0)
        async with claude:
            with pytest.raises(anthropic.RateLimitError) as refused:
                await claude.messages.create(
                    model="fake/gpt-test",
                    max_tokens=20,
                    messages=[{"role": "user", "content": "x"}],
                )
        assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_tpm_admits_on_the_estimate_and_corrects_with_actual_usage(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    # The fake reports 1250 tokens a request; tpm 2000 admits the first (estimate: bytes/4 + 10)
    # and, once corrected to the real 1250, refuses the second until 30 s of refill.
    add_keys(cfg, tpm=2000)
    clock = Clock()
    async with serve_config(cfg, fake_upstream, clock) as rd, aiohttp.ClientSession() as http:
        status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=10)
        assert status == 200 and headers["x-ratelimit-limit-tokens"] == "2000"
        estimate = 2000 - int(headers["x-ratelimit-remaining-tokens"])
        assert 10 < estimate < 60
        status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=1000)
        assert status == 429
        assert headers["x-ratelimit-remaining-tokens"] == str(2000 - 1250)
        clock.now += 60
        status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=1000)
        assert status == 200
        status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=5000)
        assert status == 429
        assert b"larger than the tokens per minute limit" in _


async def test_concurrency_limit_refuses_while_busy_and_frees_the_slot_after(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    add_keys(cfg, concurrency=1)
    fake_upstream.mode = "hang"
    async with serve_config(cfg, fake_upstream, Clock()) as rd, aiohttp.ClientSession() as http:
        first = asyncio.create_task(post_chat(http, rd, KEY_A))
        await fake_upstream.arrived.wait()
        status, headers, body = await post_chat(http, rd, KEY_A)
        assert status == 429 and b"too many concurrent requests" in body
        assert headers["retry-after"] == "1"
        fake_upstream.release.set()
        assert (await first)[0] == 200
        fake_upstream.mode = "ok"
        assert (await post_chat(http, rd, KEY_A))[0] == 200


async def test_user_and_tag_limits_are_shared_by_all_their_keys(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    add_keys(cfg, rate_limits={"users": {"dave": {"rpm": 3}}, "tags": {"ops": {"rpm": 2}}})
    async with serve_config(cfg, fake_upstream, Clock()) as rd, aiohttp.ClientSession() as http:
        assert (await post_chat(http, rd, KEY_A))[0] == 200
        status, headers, _ = await post_chat(http, rd, KEY_B)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "2"  # the tightest scope is reported
        assert headers["x-ratelimit-remaining-requests"] == "0"
        status, _, body = await post_chat(http, rd, KEY_A)
        assert status == 429 and b"tag:ops" in body
        text = await rd.metrics_text(http)
        assert 'routerd_rate_limited_total{scope="tag"} 1.0' in text


async def test_a_budget_refusal_takes_nothing_from_the_rate_limits(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    add_keys(cfg, rpm=2, concurrency=1)
    budgets = cfg.parent / "budgets.yaml"
    doc = yaml.safe_load(budgets.read_text())
    doc["budgets"].append(
        {"id": "a-cap", "limit_usd": 0.01, "period": "total", "scope": {"key": "a"}}
    )
    budgets.write_text(yaml.safe_dump(doc))
    async with serve_config(cfg, fake_upstream, Clock()) as rd, aiohttp.ClientSession() as http:
        for _ in range(3):  # worst case 16384 output tokens x $1.60 / 1M: over the $0.01 cap
            status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=16384)
            assert status == 402
            assert headers["x-ratelimit-remaining-requests"] == "2"  # no request taken
        for remaining in ("1", "0"):
            status, headers, _ = await post_chat(http, rd, KEY_A, max_tokens=10)
            assert status == 200 and headers["x-ratelimit-remaining-requests"] == remaining
        status, _, _ = await post_chat(http, rd, KEY_A, max_tokens=10)
        assert status == 429
