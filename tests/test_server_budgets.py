"""Budgets enforced end to end: 402s in both envelopes, no overspend under 64 concurrent streams,
spend surviving a restart (torn last line included), a reload that changes a budget's period, and
`/v1/key`, `/v1/generation`, `/admin/usage`, `/admin/budgets`, `routerd usage` agreeing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import yaml

from routerd.metering.journal import iter_journal
from tests.conftest import (
    FULL_KEY,
    MASTER_KEY,
    Routerd,
    key_hash,
    read_journal,
    serve_config,
)
from tests.fakes import USAGE, FakeOpenAI

# fake/gpt-test: prompt 0.40, cached 0.10, completion 1.60 USD/1M; the fake reports 1200 prompt
# (200 cached) and 50 completion tokens: 1000*0.4 + 200*0.1 + 50*1.6 = 500 micro-USD a request.
COST_PICO = 500_000_000
TEAM_KEY = "sk-rd-test-team-0123456789abcdef"
PROMPT = "x" * 1300  # >= the 1200 tokens the fake reports: the byte bound holds


def set_budgets(config_path: Path, entries: list[dict[str, Any]], **key_extra: Any) -> None:
    root = config_path.parent
    keys = yaml.safe_load((root / "keys.yaml").read_text())
    keys["keys"].append({"id": "team", "hash": key_hash(TEAM_KEY), "user": "carol", **key_extra})
    (root / "keys.yaml").write_text(yaml.safe_dump(keys))
    (root / "budgets.yaml").write_text(yaml.safe_dump({"budgets": entries}))


def client(rd: Routerd, key: str = TEAM_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{rd.url}/v1", max_retries=0)


async def admin_get(rd: Routerd, path: str, key: str = MASTER_KEY) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{rd.url}{path}", headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def chat(rd: Routerd, stream: bool = False) -> str:
    async with client(rd) as oai:
        return await _chat(oai, stream)


async def _chat(oai: openai.AsyncOpenAI, stream: bool) -> str:
    messages: Any = [{"role": "user", "content": PROMPT}]
    if not stream:
        raw = await oai.chat.completions.with_raw_response.create(
            model="fake/gpt-test", messages=messages, max_tokens=50
        )
        return raw.headers["x-request-id"]
    chunks = await oai.chat.completions.create(
        model="fake/gpt-test", messages=messages, max_tokens=50, stream=True
    )
    async for _ in chunks:
        pass
    return ""


async def test_64_concurrent_streams_never_overspend_and_the_rest_get_402(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    limit_usd = 0.005  # room for 10 requests at their exact cost, fewer at their worst case
    set_budgets(
        cfg, [{"id": "team-cap", "limit_usd": limit_usd, "period": "daily"}], budgets=["team-cap"]
    )
    fake_upstream.mode = "slow_stream"
    async with serve_config(cfg, fake_upstream) as rd:
        results = await asyncio.gather(
            *(chat(rd, stream=True) for _ in range(64)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, openai.APIStatusError)]
        ok = [r for r in results if r == ""]
        assert len(ok) + len(refused) == 64, [r for r in results if r != ""][:3]
        assert ok and all(e.status_code == 402 for e in refused)
        body = refused[0].body
        assert isinstance(body, dict)
        assert body["code"] == "key_limit_exceeded" and body["budget_id"] == "team-cap"
        assert body["resets_at"].endswith("T00:00:00.000Z")
        lines = await rd.wait_journal(64)
        spent = sum(line["cost_pico_usd"] for line in lines if line["key_id"] == "team")
        assert spent == len(ok) * COST_PICO
        assert spent <= limit_usd * 10**12
        budgets = await admin_get(rd, "/admin/budgets")
        (team,) = [b for b in budgets["data"] if b["id"] == "team-cap"]
        assert team["spent_pico_usd"] == spent and team["reserved_usd"] == 0
        async with aiohttp.ClientSession() as http:
            metrics = await rd.metrics_text(http)
        assert f'routerd_budget_rejections_total{{budget="team-cap"}} {len(refused)}.0' in metrics
        assert 'routerd_budget_limit_usd{budget="team-cap"} 0.005' in metrics


async def test_shared_budget_refuses_with_insufficient_credits_in_the_anthropic_envelope(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    set_budgets(cfg, [{"id": "org", "limit_usd": 0.000001, "period": "monthly", "scope": "global"}])
    async with serve_config(cfg, fake_upstream) as rd:
        claude = anthropic.AsyncAnthropic(api_key=TEAM_KEY, base_url=rd.url, max_retries=0)
        async with claude:
            with pytest.raises(anthropic.APIStatusError) as caught:
                await claude.messages.create(
                    model="fake/gpt-test",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "hi"}],
                )
        assert caught.value.status_code == 402
        error = caught.value.body["error"]  # type: ignore[index]
        assert error["type"] == "billing_error" and error["code"] == "insufficient_credits"
        assert error["budget_id"] == "org" and "resets at" in error["message"]
        assert fake_upstream.requests == []  # refused before any upstream call
        (line,) = await rd.wait_journal(1)
        assert (line["status"], line["error_code"], line["cost_pico_usd"]) == (
            402, "insufficient_credits", 0,
        )  # fmt: skip


async def test_spend_survives_a_restart_including_a_torn_last_line(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    set_budgets(cfg, [{"id": "team-cap", "limit_usd": 1, "period": "weekly"}], budgets=["team-cap"])
    async with serve_config(cfg, fake_upstream) as rd:
        for _ in range(3):
            await chat(rd)
        before = await admin_get(rd, "/admin/budgets")
        key_before = await admin_get(rd, "/v1/key", TEAM_KEY)
    (journal_file,) = (cfg.parent / "usage").glob("usage-*.jsonl")
    with journal_file.open("ab") as handle:  # a crash mid-write
        handle.write(b'{"ts": "2026-11-24T10:00:00.000Z", "key_id": "team", "cost_pico_usd": 9')
    async with serve_config(cfg, fake_upstream) as rd:
        after = await admin_get(rd, "/admin/budgets")
        assert after == before
        assert after["data"][0]["spent_pico_usd"] == 3 * COST_PICO
        assert await admin_get(rd, "/v1/key", TEAM_KEY) == key_before
        await chat(rd)  # the writer appends after the torn fragment, never into it
        await rd.gateway.journal.flush()
        lines = list(iter_journal(cfg.parent / "usage"))
        assert len(lines) == 4 and lines[-1]["key_id"] == "team"


async def test_reload_that_changes_the_period_recomputes_and_a_limit_change_keeps_spend(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    set_budgets(cfg, [{"id": "cap", "limit_usd": 1, "period": "daily", "scope": {"user": "carol"}}])
    async with serve_config(cfg, fake_upstream) as rd:
        await chat(rd)
        await chat(rd)
        budgets_file = cfg.parent / "budgets.yaml"
        budgets_file.write_text(
            yaml.safe_dump(
                {
                    "budgets": [
                        {"id": "cap", "limit_usd": 2, "period": "daily", "scope": {"user": "carol"}}
                    ]
                }
            )
        )
        assert (await rd.gateway.reload())[0]
        (cap,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert (cap["limit_usd"], cap["spent_pico_usd"]) == (2, 2 * COST_PICO)
        budgets_file.write_text(
            yaml.safe_dump(
                {
                    "budgets": [
                        {"id": "cap", "limit_usd": 2, "period": "3600s", "scope": {"user": "carol"}}
                    ]
                }
            )
        )
        assert (await rd.gateway.reload())[0]
        (cap,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert cap["period"] == "3600s" and cap["spent_pico_usd"] == 2 * COST_PICO
        await chat(rd)
        (cap,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert cap["spent_pico_usd"] == 3 * COST_PICO


async def test_key_generation_admin_usage_and_cli_agree_on_the_same_journal(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    set_budgets(
        cfg, [{"id": "team-cap", "limit_usd": 1, "period": "monthly"}], budgets=["team-cap"]
    )
    async with serve_config(cfg, fake_upstream) as rd:
        ids = [await chat(rd) for _ in range(2)]
        await chat(rd, stream=True)
        async with openai.AsyncOpenAI(
            api_key=FULL_KEY, base_url=f"{rd.url}/v1", max_retries=0
        ) as full:
            await full.chat.completions.create(
                model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}]
            )
        key = (await admin_get(rd, "/v1/key", TEAM_KEY))["data"]
        usage = await admin_get(rd, "/admin/usage?group_by=key")
        generation = await admin_get(rd, f"/v1/generation?id={ids[0]}", TEAM_KEY)
        generation_cost = generation["data"]["total_cost"]
    rows = {row["group"]: row for row in usage["data"]}
    team_usd = 3 * COST_PICO / 10**12
    assert rows["team"]["cost_pico_usd"] == 3 * COST_PICO and rows["team"]["requests"] == 3
    assert rows["full"]["requests"] == 1
    assert key["usage"] == key["usage_daily"] == key["usage_monthly"] == team_usd
    assert key["limit"] == 1 and key["limit_reset"] == "monthly"
    assert key["limit_remaining"] == pytest.approx(1 - team_usd)
    assert generation_cost == pytest.approx(COST_PICO / 10**12)
    command = [sys.executable, "-m", "routerd", "usage", "-c", str(cfg), "--by", "key", "--json"]
    cli = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=True
    )
    offline = {r["group"]: r for r in map(json.loads, cli.stdout.splitlines())}
    assert offline == rows
    journal = read_journal(cfg.parent / "usage")
    assert sum(line["cost_pico_usd"] for line in journal if line["key_id"] == "team") == (
        3 * COST_PICO
    )


async def test_key_endpoint_needs_a_valid_key_and_admin_endpoints_the_master_key(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    async with serve_config(cfg, fake_upstream) as rd, aiohttp.ClientSession() as http:
        async with http.get(f"{rd.url}/v1/key") as resp:
            assert resp.status == 401
        for path in ("/admin/budgets", "/admin/usage"):
            headers = {"Authorization": f"Bearer {FULL_KEY}"}
            async with http.get(f"{rd.url}{path}", headers=headers) as resp:
                assert resp.status == 401
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        async with http.get(f"{rd.url}/admin/usage?group_by=nope", headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "group_by"


async def test_a_client_gone_mid_stream_is_metered_for_what_was_streamed(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    set_budgets(cfg, [{"id": "team-cap", "limit_usd": 1, "period": "daily"}], budgets=["team-cap"])
    fake_upstream.mode = "slow_stream"
    body = {
        "model": "fake/gpt-test",
        "stream": True,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "y" * 400}],
    }
    async with serve_config(cfg, fake_upstream) as rd:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {TEAM_KEY}", "Content-Type": "application/json"}
            payload = json.dumps(body).encode()
            async with http.post(
                f"{rd.url}/v1/chat/completions", data=payload, headers=headers
            ) as resp:
                assert resp.status == 200
                first = await resp.content.readuntil(b"\n\n")
                assert first.startswith(b"data: ")
        (line,) = await rd.wait_journal(1)
        assert line["status"] == 499 and line["usage_estimated"] is True
        assert line["completion_tokens"] >= 1
        assert line["prompt_tokens"] == len(payload) // 4  # the estimate: request bytes / 4
        assert line["cost_pico_usd"] > 0
        (cap,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert cap["spent_pico_usd"] == line["cost_pico_usd"] and cap["reserved_usd"] == 0


async def test_a_client_gone_before_its_reply_is_metered_in_full(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    """The meter step runs after the engine writes a whole reply: a client that left while
    the upstream was still answering is journaled and charged all the same."""
    set_budgets(cfg, [{"id": "team-cap", "limit_usd": 1, "period": "daily"}], budgets=["team-cap"])
    fake_upstream.mode = "hang"
    body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    async with serve_config(cfg, fake_upstream) as rd:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {TEAM_KEY}"}
            call = asyncio.create_task(
                http.post(f"{rd.url}/v1/chat/completions", json=body, headers=headers)
            )
            await fake_upstream.arrived.wait()
            call.cancel()  # the client goes away while the upstream is answering
            with pytest.raises(asyncio.CancelledError):
                await call
        fake_upstream.release.set()
        (line,) = await rd.wait_journal(1)
        assert line["status"] == 200 and line["usage_estimated"] is False
        assert (line["prompt_tokens"], line["completion_tokens"]) == (
            USAGE["prompt_tokens"],
            USAGE["completion_tokens"],
        )
        (cap,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert cap["spent_pico_usd"] == line["cost_pico_usd"] > 0 and cap["reserved_usd"] == 0


async def test_a_refused_budget_admits_again_when_its_window_rolls_over(
    cfg: Path, fake_upstream: FakeOpenAI
) -> None:
    class Clock:
        now = 1_800_000_030.0  # 30 s into a 60 s window (1_800_000_000 is a multiple of 60)

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    set_budgets(cfg, [{"id": "minute", "limit_usd": 0.0009, "period": "60s"}], budgets=["minute"])
    async with serve_config(cfg, fake_upstream, clock) as rd:
        await chat(rd)
        with pytest.raises(openai.APIStatusError) as refused:
            await chat(rd)
        body: Any = refused.value.body
        assert body["resets_at"] == "2027-01-15T08:01:00.000Z"
        clock.now = 1_800_000_059.999  # still the same window
        with pytest.raises(openai.APIStatusError):
            await chat(rd)
        clock.now = 1_800_000_060.0  # the boundary starts a new window at zero
        await chat(rd)
        (minute,) = (await admin_get(rd, "/admin/budgets"))["data"]
        assert minute["window_start"] == "2027-01-15T08:01:00.000Z"
        assert minute["spent_pico_usd"] == COST_PICO
