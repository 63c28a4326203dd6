"""OpenAI Responses ingress through routerd with the official openai SDK, and a Codex-like
request sent raw: fake OpenAI and Anthropic upstreams, journal and cost checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml

from routerd.metrics import Metrics
from routerd.server.gateway import Gateway
from tests import fakes
from tests.conftest import FULL_KEY, Routerd, write_config
from tests.fakes import FakeOpenAI
from tests.serving import RouterdServer
from tests.test_any_to_any import OPENAI_COST

FIXTURE = Path(__file__).parent / "fixtures" / "formats" / "responses_request_codex.json"


async def test_responses_to_openai_upstream(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="fake/gpt-test", input="hi", instructions="Be brief.", max_output_tokens=100
    )
    assert response.output_text == fakes.REPLY_TEXT
    assert response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1200, 50)
    assert response.usage.input_tokens_details.cached_tokens == 200
    sent = routerd.fake.last.body
    assert sent["model"] == "gpt-upstream"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    (line,) = await routerd.wait_journal(1)
    assert line["ingress"] == "responses"
    assert line["cost_pico_usd"] == OPENAI_COST


async def test_responses_stream_ends_with_completed_and_usage(
    routerd: Routerd, client: openai.AsyncOpenAI
) -> None:
    async with client.responses.stream(model="fake/gpt-test", input="hi") as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert final.output_text == fakes.REPLY_TEXT
    assert final.id.startswith("resp_")
    assert final.usage is not None
    assert final.usage.total_tokens == 1250
    (line,) = await routerd.wait_journal(1)
    assert (line["stream"], line["status"]) == (True, 200)


async def test_previous_response_id_is_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(
            model="echo/echo-1", input="hi", previous_response_id="resp_123"
        )
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == "previous_response_id"


async def test_codex_like_request_streams_to_completion(
    tmp_path: Path, fake_upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    config_path = write_config(tmp_path / "codex", fake_upstream.base_url)
    daemon = yaml.safe_load(config_path.read_text())
    daemon["max_body_bytes"] = 1_048_576  # Codex requests carry every tool definition
    config_path.write_text(yaml.safe_dump(daemon))
    server = RouterdServer(Gateway.load(config_path, Metrics()))
    await server.start_server()
    body = json.loads(FIXTURE.read_text())
    body.update(model="fake/gpt-test", stream=True)
    try:
        text = await _post_stream(http, str(server.make_url("/v1/responses")), body)
    finally:
        await server.close()
    events = [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]
    last = events[-1]
    assert last["type"] == "response.completed"
    usage = last["response"]["usage"]
    assert usage["input_tokens"] == 1200
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    assert usage["input_tokens_details"]["cached_tokens"] == 200
    # the reasoning item with encrypted content cannot go to a Chat upstream: dropped
    sent = fake_upstream.last.body
    assert all("encrypted" not in json.dumps(m) for m in sent["messages"])


async def _post_stream(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    async with http.post(
        url,
        headers={"Authorization": f"Bearer {FULL_KEY}"},
        json=body,
    ) as resp:
        assert resp.status == 200
        return await resp.text()
