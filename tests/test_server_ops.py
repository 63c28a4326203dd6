"""Operational routes: health, readiness, model listing, metrics."""

from __future__ import annotations

import re

import aiohttp
import openai
import pytest
import structlog

from tests.conftest import ECHO_KEY, FULL_KEY, Routerd
from tests.metrics_reference import (
    ReferenceRequestMetrics,
    request_families,
    without_created_values,
)

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_healthz_readyz(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{routerd.url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    async with http.get(f"{routerd.url}/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {"status": "ready", "config_generation": 1}


async def test_list_models_full(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = {m.id for m in page.data}
    assert ids == {"fake/gpt-test", "fake/embed-test", "echo/echo-1", "echo/echo-embed-1"}
    fake = next(m for m in page.data if m.id == "fake/gpt-test")
    extra = fake.model_dump()
    assert extra["context_length"] == 128000
    assert extra["pricing"]
    assert fake.object == "model"


async def test_list_models_restricted(echo_client: openai.AsyncOpenAI) -> None:
    page = await echo_client.models.list()
    assert [m.id for m in page.data] == ["echo/echo-1", "echo/echo-embed-1"]


async def test_list_models_needs_key(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{routerd.url}/v1/models") as resp:
        assert resp.status == 401


async def test_get_model_with_slash(
    client: openai.AsyncOpenAI, echo_client: openai.AsyncOpenAI
) -> None:
    model = await client.models.retrieve("fake/gpt-test")
    assert model.id == "fake/gpt-test"
    assert model.model_dump()["context_length"] == 128000
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope/nothing")
    with pytest.raises(openai.NotFoundError):
        await echo_client.models.retrieve("fake/gpt-test")


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        assert match, line
        got = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if match.group(1) == name and got == labels:
            return float(match.group(3))
    return None


async def _refused_for_the_echo_key(routerd: Routerd) -> None:
    """A 403: the demo key may only use `echo/*`."""
    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=ECHO_KEY, max_retries=0
    ) as echo:
        with pytest.raises(openai.PermissionDeniedError):
            await echo.chat.completions.create(model="fake/gpt-test", messages=MESSAGES)


async def test_metrics(
    routerd: Routerd, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await client.chat.completions.create(model="fast", messages=MESSAGES)
    await client.chat.completions.create(model="fake/gpt-test", messages=MESSAGES)
    await _refused_for_the_echo_key(routerd)
    text = await routerd.metrics_text(http)
    ok = sample(
        text,
        "routerd_requests_total",
        ingress="chat_completions",
        model="fake/gpt-test",
        provider="fake",
        code="200",
    )
    assert ok == 2
    denied = sample(
        text,
        "routerd_requests_total",
        ingress="chat_completions",
        model="",
        provider="",
        code="403",
    )
    assert denied == 1
    assert sample(text, "routerd_config_generation") == 1
    assert sample(text, "routerd_tokens_total", type="prompt") == 2400
    assert FULL_KEY not in text
    assert "alice" not in text


async def test_generation_metadata_for_the_same_key_only(
    routerd: Routerd, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    request_id = raw.headers["X-Request-Id"]
    url = f"{routerd.url}/v1/generation?id={request_id}"
    async with http.get(url, headers={"Authorization": f"Bearer {FULL_KEY}"}) as resp:
        assert resp.status == 200
        data = (await resp.json())["data"]
    assert (data["id"], data["model"], data["provider_name"]) == (
        request_id,
        "fake/gpt-test",
        "fake",
    )
    assert (data["tokens_prompt"], data["tokens_completion"]) == (1200, 50)
    assert data["cost_pico_usd"] == 500_000_000
    assert data["total_cost"] == pytest.approx(0.0005)
    async with http.get(url, headers={"Authorization": f"Bearer {ECHO_KEY}"}) as resp:
        assert resp.status == 404  # another key's request is invisible
        assert (await resp.json())["error"]["code"] == "not_found"


def _mask_observed_times(text: str) -> str:
    """Bucket counts and sums of the two latency histograms depend on wall time: mask them."""
    return re.sub(
        r"^(routerd_(?:request_duration|upstream_ttft)_seconds_(?:bucket|sum)\{[^}]*\}) \S+$",
        r"\1 V",
        text,
        flags=re.MULTILINE,
    )


async def test_request_metrics_scrape_like_stock_prometheus_client(
    routerd: Routerd, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """After real requests (ok, streamed, embeddings, refused, unknown model), the per-request
    families equal what stock prometheus_client collectors fed the same requests export: same
    families, series, labels, counts, tokens, cost and `_created` series."""
    await client.chat.completions.create(model="fast", messages=MESSAGES)
    stream = await client.chat.completions.create(
        model="fake/gpt-test", messages=MESSAGES, stream=True
    )
    async for _ in stream:
        pass
    await client.embeddings.create(model="echo/echo-embed-1", input=["a b", "c"])
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope/none", messages=MESSAGES)
    await _refused_for_the_echo_key(routerd)
    lines = await routerd.wait_journal(5)
    assert len(lines) == 5

    ref = ReferenceRequestMetrics()
    for line in lines:
        ttft = line["ttft_ms"]
        ref.observe_request(
            line["ingress"], line["resolved_model"] or "", line["provider"] or "",
            line["status"], line["latency_ms"] / 1000, None if ttft is None else ttft / 1000,
            line["prompt_tokens"], line["completion_tokens"], line["cached_tokens"],
            line["cache_write_tokens"], line["reasoning_tokens"], line["cost_pico_usd"],
        )  # fmt: skip
    scraped = request_families(await routerd.metrics_text(http))
    assert _mask_observed_times(without_created_values(scraped)) == _mask_observed_times(
        without_created_values(ref.text())
    )
    assert scraped.count("_created{") == ref.text().count("_created{") > 0
    assert sample(scraped, "routerd_request_duration_seconds_count", ingress="embeddings") == 1
    assert sample(scraped, "routerd_tokens_total", type="prompt") == sum(
        line["prompt_tokens"] for line in lines
    )


async def test_request_log_event_keeps_its_fields(
    routerd: Routerd, client: openai.AsyncOpenAI
) -> None:
    with structlog.testing.capture_logs() as events:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake/gpt-test", messages=MESSAGES
        )
    (event,) = [e for e in events if e["event"] == "request"]
    assert event == {
        "event": "request",
        "log_level": "info",
        "request_id": raw.headers["X-Request-Id"],
        "key_id": "full",
        "ingress": "chat_completions",
        "model": "fake/gpt-test",
        "provider": "fake",
        "status": 200,
        "error_code": None,
        "latency_ms": event["latency_ms"],
        "prompt_tokens": 1200,
        "completion_tokens": 50,
    }
    assert isinstance(event["latency_ms"], int)
