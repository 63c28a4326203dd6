"""The route table and the dispatcher: unknown paths, wrong methods, HEAD, request ids, the
envelope of the API a path belongs to, and path parameters (over real HTTP, on the engine the
run uses: `make test` runs these on both)."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from routerd.server.http import Reply, Request
from routerd.server.routes import RouteMiss, Routes
from tests.conftest import FULL_KEY, Routerd


async def _named(request: Request) -> Reply:
    return Reply(request.method.encode(), headers={"X-Params": repr(request.match_info)})


def test_routes_exact_pattern_head_and_misses() -> None:
    routes = Routes()
    routes.get("/v1/models", _named)
    routes.get("/v1/models/{model_id:.+}", _named)
    routes.get("/v1/users/{user_id}/usage", _named)
    routes.patch("/v1/users/{user_id}", _named)
    assert routes.resolve("GET", "/v1/models") == (_named, {})
    assert routes.resolve("HEAD", "/v1/models") == (_named, {})
    assert routes.resolve("GET", "/v1/models/openai/gpt-4o")[1] == {"model_id": "openai/gpt-4o"}
    assert routes.resolve("GET", "/v1/users/u1/usage")[1] == {"user_id": "u1"}
    assert routes.resolve("PATCH", "/v1/users/u1")[1] == {"user_id": "u1"}
    with pytest.raises(RouteMiss) as missing:
        routes.resolve("GET", "/v1/users/u1/usage/more")
    assert missing.value.http_status == 404
    with pytest.raises(RouteMiss) as wrong:
        routes.resolve("DELETE", "/v1/users/u1")
    assert wrong.value.http_status == 405
    assert wrong.value.headers == {"Allow": "PATCH"}
    with pytest.raises(RouteMiss):
        routes.resolve("GET", "/v1/models/")  # `.+` needs at least one character


async def test_unknown_path_is_a_404_in_the_openai_envelope(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{routerd.url}/v1/nothing-here", headers={"X-Request-Id": "r-1"}) as r:
        assert r.status == 404
        assert r.headers["X-Request-Id"] == "r-1"
        body = await r.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"] == "no such endpoint"
    assert body["error"]["request_id"] == "r-1"


async def test_wrong_method_is_a_405_with_allow(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{routerd.url}/v1/chat/completions") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await resp.json())["error"]["code"] == "invalid_request"
    client = openai.AsyncOpenAI(base_url=f"{routerd.url}/v1", api_key=FULL_KEY, max_retries=0)
    async with client:
        with pytest.raises(openai.NotFoundError):
            await client.post("/no/such", cast_to=object)


async def test_messages_paths_answer_in_the_anthropic_envelope(routerd: Routerd) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=routerd.url, api_key=FULL_KEY, max_retries=0)
    async with sdk:
        with pytest.raises(anthropic.NotFoundError) as err:
            await sdk.post("/v1/messages/nope", cast_to=object, body={})
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["code"] == "invalid_request"


async def test_head_of_a_get_route_has_headers_and_no_body(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    async with http.head(f"{routerd.url}/healthz") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert int(resp.headers["Content-Length"]) > 0
        assert await resp.read() == b""


async def test_percent_encoded_model_id_is_decoded(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    url = f"{routerd.url}/v1/models/fake%2Fgpt-test"
    auth = {"Authorization": f"Bearer {FULL_KEY}"}
    async with http.get(url, headers=auth) as resp:
        assert resp.status == 200
        assert (await resp.json())["id"] == "fake/gpt-test"
    async with http.get(f"{routerd.url}/v1/models", headers=auth) as resp:
        assert resp.headers["X-Request-Id"].startswith("req_")
