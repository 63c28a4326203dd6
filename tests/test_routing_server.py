"""Routing through the server: breaker open and recovery (surviving a reload), provider
preferences and `models` lists, presets, per-model timeouts and the per-provider concurrency cap."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import openai
import pytest

from tests.fakes import REPLY_TEXT
from tests.fakes_faulty import FaultyUpstream
from tests.routing_rig import BREAKER, Rig, catalog
from tests.test_server_ops import sample

MESSAGES = [{"role": "user", "content": "hi"}]


async def reload_with(rig: Rig, doc: dict[str, Any]) -> None:
    rig.write_catalog(doc)
    ok, message = await rig.gateway.reload()
    assert ok, message


async def ask(sdk: openai.AsyncOpenAI, model: str, **extra: Any) -> str:
    raw = await sdk.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, **extra
    )
    assert raw.parse().choices[0].message.content == REPLY_TEXT
    return raw.headers["x-routerd-provider"]


async def test_breaker_opens_skips_survives_reload_and_recovers(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "500"
    for _ in range(BREAKER["failures"]):
        assert await ask(sdk, "t/pair") == "b"
    assert faulty.hits["a"] == 3
    health = await rig.health()
    assert health["a/a-model"]["state"] == "open"
    assert health["a/a-model"]["models"] == ["t/primary", "t/single", "t/pair"]
    text = await rig.metrics()
    assert sample(text, "routerd_deployment_state", provider="a", model="a-model") == 2
    await reload_with(rig, catalog(faulty))  # unchanged deployments keep their state
    assert (await rig.health())["a/a-model"]["state"] == "open"
    assert await ask(sdk, "t/pair") == "b"
    assert faulty.hits["a"] == 3  # skipped while open
    (line,) = [x for x in await rig.wait_journal(4) if x["config_generation"] == 2]
    assert line["attempts"] == 1
    with pytest.raises(openai.APIStatusError) as caught:  # no other deployment: fail fast
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "circuit breaker open" in caught.value.message
    assert faulty.hits["a"] == 3
    faulty.modes["a"] = "ok"
    await asyncio.sleep(BREAKER["cooldown"] + 0.05)
    assert (await rig.health())["a/a-model"]["state"] == "half_open"
    assert await ask(sdk, "t/pair") == "a"  # the probe
    assert (await rig.health())["a/a-model"]["state"] == "closed"
    text = await rig.metrics()
    assert sample(text, "routerd_deployment_state", provider="a", model="a-model") == 0
    await rig.assert_no_leaks()


async def test_provider_order_and_models_list_are_honoured(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    extra = {"provider": {"order": ["b"]}, "custom": 1}
    assert await ask(sdk, "t/pair", extra_body=extra) == "b"
    name, body = faulty.bodies[-1]
    assert name == "b"
    assert body["custom"] == 1 and "provider" not in body  # consumed by routerd
    assert await ask(sdk, "t/pair", extra_headers={"x-routerd-route": "ordered"}) == "a"
    faulty.modes["a"] = "500"
    raw = await sdk.chat.completions.with_raw_response.create(
        model="t/single",
        messages=MESSAGES,
        extra_body={"models": ["t/backup"], "route": "fallback"},
    )
    assert raw.headers["x-routerd-model"] == "t/backup"
    assert "models" not in faulty.bodies[-1][1]
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(
            model="t/pair", messages=MESSAGES, extra_body={"provider": {"only": ["zzz"]}}
        )
    lines = await rig.wait_journal(4)
    assert [x["deployment"] for x in lines[:3]] == ["b/b-model", "a/a-model", "c/c-model"]
    assert lines[2]["model"] == "t/single" and lines[2]["resolved_model"] == "t/backup"
    await rig.assert_no_leaks()


async def test_preset_fixes_model_parameters_and_system_prompt(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    doc = catalog(faulty)
    doc["presets"] = {
        "brief": {"model": "t/single", "parameters": {"temperature": 0.1}, "system": "Be brief."}
    }
    await reload_with(rig, doc)
    assert await ask(sdk, "@preset/brief") == "a"
    _, body = faulty.bodies[-1]
    assert body["model"] == "a-model"
    assert body["temperature"] == 0.1
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *MESSAGES]
    (line,) = await rig.wait_journal(1)
    assert (line["model"], line["resolved_model"]) == ("@preset/brief", "t/single")


async def test_model_timeouts_override_the_providers(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "hang_headers"
    faulty.hang_seconds = 0.15  # well within the provider's first_byte (0.5 s)
    assert await ask(sdk, "t/single") == "a"
    doc = catalog(faulty)
    doc["models"]["t/single"]["timeouts"] = {"first_byte": 0.05}
    await reload_with(rig, doc)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (504, "provider_timeout")
    await rig.assert_no_leaks()


async def test_concurrency_cap_fails_fast_with_provider_overloaded(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    doc = catalog(faulty)
    doc["providers"]["a"].update(max_concurrency=1, queue_timeout=0.05)
    await reload_with(rig, doc)
    faulty.modes["a"] = "hang_headers"
    faulty.hang_seconds = 0.3
    first = asyncio.create_task(ask(sdk, "t/single"))
    await faulty.arrived.wait()
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="t/single", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (529, "provider_overloaded")
    assert await first == "a"
    assert faulty.hits["a"] == 1
    health = await rig.health()
    assert health["a/a-model"]["consecutive_failures"] == 0  # routerd's own limit
    text = await rig.metrics()
    assert sample(text, "routerd_upstream_inflight", provider="a") == 0
    await rig.assert_no_leaks()


async def test_embeddings_fall_over_too(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    faulty.modes["a"] = "500"
    raw = await sdk.embeddings.with_raw_response.create(model="t/pair", input="hello")
    assert raw.headers["x-routerd-provider"] == "b"
    assert raw.parse().data[0].embedding == [0.5, 0.25]
    (line,) = await rig.wait_journal(1)
    assert (line["ingress"], line["attempts"], line["prompt_tokens"]) == ("embeddings", 2, 10)
    await rig.assert_no_leaks()


async def test_weighted_balance_over_many_requests(
    rig: Rig, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI
) -> None:
    doc = catalog(faulty)
    doc["providers"].update(e1={"type": "echo"}, e2={"type": "echo"})
    doc["models"]["t/weighted"] = {
        "pricing": {"prompt": 0, "completion": 0},
        "deployments": [
            {"provider": "e1", "model": "echo-1", "weight": 3},
            {"provider": "e2", "model": "echo-1", "weight": 1},
        ],
    }
    await reload_with(rig, doc)
    served: Counter[str] = Counter()
    for _ in range(400):
        raw = await sdk.chat.completions.with_raw_response.create(
            model="t/weighted", messages=MESSAGES
        )
        served[raw.headers["x-routerd-provider"]] += 1
    assert abs(served["e1"] / 400 - 0.75) < 0.08  # 3.7 standard deviations
    health = await rig.health()
    assert health["e1/echo-1"]["window_attempts"] == served["e1"]


async def test_a_streamed_answer_feeds_its_deployments_time_to_first_token(
    rig: Rig, sdk: openai.AsyncOpenAI
) -> None:
    assert (await rig.health())["a/a-model"]["ewma_ttft_ms"] is None
    stream = await sdk.chat.completions.create(model="t/single", messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text  # the fake streams its reply text
    health = await rig.health()
    assert health["a/a-model"]["ewma_ttft_ms"] is not None  # taken at the relay's first chunk
    assert health["b/b-model"]["ewma_ttft_ms"] is None
    lines = await rig.wait_journal(1)
    assert lines[0]["stream"] is True and lines[0]["ttft_ms"] is not None
    await rig.assert_no_leaks()
