"""Requests recorded from the real agent CLIs, replayed through routerd to every upstream type.

The fixtures are turn-2 requests captured from Claude Code 2.1.197 (`POST /v1/messages?beta=true`)
and Codex CLI 0.169.0 (`POST /v1/responses`) talking to routerd, with long prompt texts trimmed
and no keys. Each must stream to the end each client requires: Anthropic's `message_stop` after
a `message_delta` with usage; Codex's `response.completed` carrying the id and full usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FULL_KEY, Routerd

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
CLAUDE_CODE = FIXTURES / "claude-code-2.1.197-messages-turn2.json"
CODEX = FIXTURES / "codex-0.169.0-responses-turn2.json"
MODELS = ["fake/gpt-test", "anth/claude-test", "gem/gemini-test"]


def _load(fixture: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture.read_text())
    return data


async def _replay(
    gw: Routerd, http: aiohttp.ClientSession, fixture: Path, model: str
) -> list[dict[str, Any]]:
    recorded = _load(fixture)
    body = {**recorded["body"], "model": model}
    headers = {**recorded["headers"], "Authorization": f"Bearer {FULL_KEY}"}
    async with http.post(f"{gw.url}{recorded['path']}", json=body, headers=headers) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("model", MODELS)
async def test_claude_code_turn(gw: Routerd, http: aiohttp.ClientSession, model: str) -> None:
    events = await _replay(gw, http, CLAUDE_CODE, model)
    types = [e["type"] for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] > 0
    assert any(e["type"] == "content_block_delta" for e in events)
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["status"], line["resolved_model"]) == ("messages", 200, model)
    assert line["prompt_tokens"] > 0


@pytest.mark.parametrize("model", MODELS)
async def test_codex_turn(gw: Routerd, http: aiohttp.ClientSession, model: str) -> None:
    events = await _replay(gw, http, CODEX, model)
    assert events[0]["type"] == "response.created"
    last = events[-1]
    assert last["type"] == "response.completed"
    response = last["response"]
    assert response["id"].startswith("resp_")
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert "cached_tokens" in usage["input_tokens_details"]
    assert "reasoning_tokens" in usage["output_tokens_details"]
    (line,) = await gw.wait_journal(1)
    assert (line["ingress"], line["status"], line["resolved_model"]) == ("responses", 200, model)
