"""Embeddings through routerd with the official openai SDK: echo and a fake OpenAI upstream."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.conftest import FULL_KEY, Routerd
from tests.fakes import EMBED_TOKENS


async def test_echo_embeddings_float_and_base64(client: openai.AsyncOpenAI) -> None:
    # the SDK asks for base64 by default and decodes it; floats when asked explicitly
    default = await client.embeddings.create(model="echo/echo-embed-1", input=["a b", "c"])
    floats = await client.embeddings.create(
        model="echo/echo-embed-1", input=["a b", "c"], encoding_format="float"
    )
    assert [len(d.embedding) for d in default.data] == [8, 8]
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding)
    assert default.usage.prompt_tokens == 3
    sized = await client.embeddings.create(model="echo/echo-embed-1", input="x", dimensions=16)
    assert len(sized.data[0].embedding) == 16


async def test_upstream_embeddings_are_forwarded_and_metered(
    routerd: Routerd, client: openai.AsyncOpenAI
) -> None:
    result = await client.embeddings.create(
        model="fake/embed-test",
        input="hello world",
        dimensions=3,
        encoding_format="float",
        extra_body={"user": "u-1"},
    )
    assert result.data[0].embedding == [0.25, -0.5, 0.75]
    sent = routerd.fake.last.body
    assert sent == {
        "model": "embed-upstream",
        "input": "hello world",
        "dimensions": 3,
        "encoding_format": "float",
        "user": "u-1",
    }
    (line,) = await routerd.wait_journal(1)
    assert line["ingress"] == "embeddings"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (EMBED_TOKENS, 0)
    # 10 tokens at $0.02 / 1M = 200,000 pico-USD: never rounded to zero
    assert line["cost_pico_usd"] == EMBED_TOKENS * 20_000
    assert line["cost_usd"] > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo/echo-embed-1"}, "input"),
        ({"model": "echo/echo-embed-1", "input": []}, "input"),
        ({"model": "echo/echo-embed-1", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
async def test_invalid_embeddings_requests(
    routerd: Routerd, http: aiohttp.ClientSession, body: dict[str, object], param: str
) -> None:
    async with http.post(
        f"{routerd.url}/v1/embeddings", headers={"Authorization": f"Bearer {FULL_KEY}"}, json=body
    ) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == param


async def test_upstream_error_on_embeddings(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    routerd.fake.mode = "500"
    with pytest.raises(openai.APIStatusError) as info:
        await client.embeddings.create(model="fake/embed-test", input="x")
    assert info.value.status_code == 502
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"]) == (502, "provider_unavailable")
