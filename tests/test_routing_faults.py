"""Fault injection: misbehaving upstreams behind routerd, seen through the official SDKs.

Each case checks what the client gets (the answer of another candidate, or the right error),
the journal line, the attempt metrics, and that no upstream connection or task is left over.
"""

from __future__ import annotations

import json

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import FULL_KEY
from tests.fakes import REPLY_TEXT, STREAM_PIECES
from tests.fakes_faulty import FaultyUpstream
from tests.routing_rig import Rig, catalog
from tests.test_server_ops import sample

MESSAGES = [{"role": "user", "content": "hi"}]


def attempts(text: str, provider: str, model: str, outcome: str) -> float | None:
    return sample(
        text, "routerd_upstream_attempts_total", provider=provider, model=model, outcome=outcome
    )


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("500", "provider_unavailable"),
        ("529", "provider_overloaded"),
        ("hang_headers", "provider_timeout"),
        ("malformed", "provider_unavailable"),
        ("401", "provider_auth"),
    ],
)
async def test_failed_deployment_falls_over_to_the_next(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI, mode: str, code: str
) -> None:
    faulty.modes["a"] = mode
    raw = await sdk.chat.completions.with_raw_response.create(model="t/pair", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == REPLY_TEXT
    assert raw.headers["x-routerd-provider"] == "b"
    assert faulty.hits == {"a": 1, "b": 1}
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["attempts"], line["provider"]) == (200, 2, "b")
    assert line["deployment"] == "b/b-model"
    assert line["resolved_model"] == "t/pair"
    text = await rig.metrics()
    assert attempts(text, "a", "t/pair", code) == 1
    assert attempts(text, "b", "t/pair", "ok") == 1
    await rig.assert_no_leaks()


async def test_request_fault_is_not_retried(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "400"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="t/primary", messages=MESSAGES)
    assert caught.value.code == "invalid_request"
    assert faulty.hits == {"a": 1}
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["error_code"], line["attempts"]) == (400, "invalid_request", 1)
    health = await rig.health()
    assert health["a/a-model"]["consecutive_failures"] == 0  # not the deployment's fault
    await rig.assert_no_leaks()


async def test_every_deployment_down_uses_the_fallback_model(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes.update(a="529", b="500")
    raw = await sdk.chat.completions.with_raw_response.create(model="t/primary", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == REPLY_TEXT
    assert raw.headers["x-routerd-model"] == "t/backup"
    (line,) = await rig.wait_journal(1)
    assert line["model"] == "t/primary"
    assert line["resolved_model"] == "t/backup"
    assert (line["attempts"], line["deployment"]) == (3, "c/c-model")
    # billed at the answering model's price: 1200 prompt at 1.00, 50 completion at 4.00 / 1M
    assert line["cost_pico_usd"] == 1200 * 1_000_000 + 50 * 4_000_000
    text = await rig.metrics()
    assert sample(text, "routerd_fallbacks_total", from_model="t/primary", to_model="t/backup")
    await rig.assert_no_leaks()


async def test_attempts_are_capped(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes.update(a="500", b="500", c="500")
    doc = rig.gateway.table.config  # default retries.max_attempts is 3: a, b, c
    assert doc.daemon.retries.max_attempts == 3
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="t/primary", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert sum(faulty.hits.values()) == 3
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["error_code"], line["attempts"]) == (
        502,
        "provider_unavailable",
        3,
    )
    await rig.assert_no_leaks()


async def test_rate_limit_passes_retry_after_and_cools_the_deployment(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "429"
    faulty.retry_after = "30"
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert caught.value.response.headers["Retry-After"] == "30"
    # the next request is not sent to the cooling deployment at all
    with pytest.raises(openai.RateLimitError) as again:
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert int(again.value.response.headers["Retry-After"]) > 25
    assert faulty.hits == {"a": 1}
    # a model with another deployment goes around it without waiting
    raw = await sdk.chat.completions.with_raw_response.create(model="t/pair", messages=MESSAGES)
    assert raw.headers["x-routerd-provider"] == "b"
    assert faulty.hits == {"a": 1, "b": 1}
    lines = await rig.wait_journal(3)
    assert [(x["status"], x["attempts"]) for x in lines] == [(429, 1), (429, 0), (200, 1)]
    health = await rig.health()
    assert health["a/a-model"]["cooling_seconds"] > 25
    await rig.assert_no_leaks()


async def _stream_text(sdk: openai.AsyncOpenAI, model: str) -> tuple[str, Exception | None]:
    text, error = "", None
    try:
        stream = await sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    except openai.APIError as exc:
        error = exc
    return text, error


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("hang_mid_stream", 504, "provider_timeout"),
        ("reset_mid_stream", 502, "provider_unavailable"),
        ("truncated", 502, "provider_unavailable"),
        ("malformed", 502, "provider_unavailable"),  # passthrough frames are checked too
    ],
)
async def test_mid_stream_failure_ends_the_stream_with_an_error_and_is_not_retried(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI, mode: str, status: int, code: str
) -> None:
    faulty.modes["a"] = mode
    text, error = await _stream_text(sdk, "t/pair")
    assert text == STREAM_PIECES[0]  # the first frames arrived, then the error event
    assert isinstance(error, openai.APIError)
    assert error.code == code
    assert faulty.hits == {"a": 1}  # b was never tried: bytes had gone to the client
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["error_code"], line["attempts"]) == (status, code, 1)
    assert line["deployment"] == "a/a-model"
    text_metrics = await rig.metrics()
    assert attempts(text_metrics, "a", "t/pair", code) == 1
    await rig.assert_no_leaks()


async def test_total_timeout_cuts_a_slow_stream(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    doc = catalog(faulty)
    doc["providers"]["a"]["timeouts"] = {"first_byte": 0.5, "idle": 0.3, "total": 0.4}
    rig.write_catalog(doc)
    assert (await rig.gateway.reload())[0]
    faulty.modes["a"] = "slow_stream"
    faulty.slow_seconds = 0.15
    text, error = await _stream_text(sdk, "t/single")
    assert text and text != "".join(STREAM_PIECES)
    assert isinstance(error, openai.APIError) and error.code == "provider_timeout"
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["error_code"]) == (504, "provider_timeout")
    await rig.assert_no_leaks()


async def test_anthropic_client_gets_an_error_event_mid_stream(
    rig: Rig, faulty: FaultyUpstream
) -> None:
    faulty.modes["a"] = "hang_mid_stream"
    body = {"model": "t/single", "max_tokens": 100, "stream": True, "messages": MESSAGES}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rig.url}/v1/messages", json=body, headers={"x-api-key": FULL_KEY}) as resp,
    ):
        assert resp.status == 200
        raw = (await resp.read()).decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    assert frames[0].startswith("event: message_start")
    name, data = frames[-1].split("\n", 1)
    assert name == "event: error"
    error = json.loads(data.removeprefix("data: "))
    assert error["type"] == "error"
    assert error["error"]["type"] == "timeout_error"
    assert error["error"]["code"] == "provider_timeout"
    async with anthropic.AsyncAnthropic(base_url=rig.url, api_key=FULL_KEY, max_retries=0) as sdk:
        with pytest.raises(anthropic.APIStatusError):
            async with sdk.messages.stream(
                model="t/single", max_tokens=100, messages=MESSAGES
            ) as stream:
                async for _ in stream:
                    pass
    await rig.assert_no_leaks()


async def test_responses_client_gets_response_failed_mid_stream(
    rig: Rig, faulty: FaultyUpstream
) -> None:
    faulty.modes["a"] = "malformed"
    async with openai.AsyncOpenAI(base_url=f"{rig.url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        stream = await sdk.responses.create(model="t/single", input="hi", stream=True)
        events = [event async for event in stream]
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None and last.response.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["error_code"]) == (502, "provider_unavailable")
    await rig.assert_no_leaks()


async def test_malformed_json_with_no_other_candidate_is_a_502(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "malformed"
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == "provider_unavailable"
    await rig.assert_no_leaks()


@pytest.mark.parametrize("mode", ["500", "429", "hang_headers"])
async def test_stream_falls_over_before_its_first_byte(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI, mode: str
) -> None:
    faulty.modes["a"] = mode
    text, error = await _stream_text(sdk, "t/pair")
    assert (text, error) == ("".join(STREAM_PIECES), None)
    assert faulty.hits == {"a": 1, "b": 1}
    (line,) = await rig.wait_journal(1)
    assert (line["status"], line["attempts"], line["deployment"]) == (200, 2, "b/b-model")
    await rig.assert_no_leaks()
