"""Authentication, admission, request validation and upstream failures, seen by real clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import (
    DISABLED_KEY,
    ECHO_KEY,
    EXPIRED_KEY,
    FULL_KEY,
    MAX_BODY_BYTES,
    Routerd,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def assert_clean(body: Any) -> None:
    text = str(body)
    assert "Traceback" not in text
    assert 'File "' not in text
    assert ".py" not in text


def sdk(routerd: Routerd, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{routerd.url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(
    ("key", "key_id"),
    [("sk-rd-wrong-0000000000000000", None), (DISABLED_KEY, None), (EXPIRED_KEY, None)],
    ids=["unknown", "disabled", "expired"],
)
async def test_rejected_keys(routerd: Routerd, key: str, key_id: str | None) -> None:
    async with sdk(routerd, key) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="echo/echo-1", messages=MESSAGES)
    err = info.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key"
    assert_clean(err.body)
    (line,) = await routerd.wait_journal(1)
    assert line["status"] == 401
    assert line["error_code"] == "invalid_api_key"
    assert line["key_id"] == key_id
    assert routerd.fake.requests == []


async def test_missing_key(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{routerd.url}/v1/chat/completions", json={"model": "echo/echo-1", "messages": MESSAGES}
    ) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert "missing API key" in body["error"]["message"]


async def test_x_api_key_header(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{routerd.url}/v1/chat/completions",
        json={"model": "echo/echo-1", "messages": MESSAGES},
        headers={"x-api-key": ECHO_KEY},
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "chat.completion"
    (line,) = await routerd.wait_journal(1)
    assert line["key_id"] == "echo-only"
    assert line["user"] == "bob"


async def test_model_not_allowed(routerd: Routerd, echo_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        await echo_client.chat.completions.create(model="fake/gpt-test", messages=MESSAGES)
    assert info.value.status_code == 403
    assert info.value.code == "model_not_allowed"
    # an alias resolving to a forbidden model is forbidden too
    with pytest.raises(openai.PermissionDeniedError):
        await echo_client.chat.completions.create(model="fast", messages=MESSAGES)
    lines = await routerd.wait_journal(2)
    assert [(x["status"], x["error_code"], x["key_id"]) for x in lines] == [
        (403, "model_not_allowed", "echo-only")
    ] * 2
    assert routerd.fake.requests == []


async def test_unknown_model(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="nope/nothing", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"], line["model"]) == (
        404,
        "model_not_found",
        "nope/nothing",
    )


async def _post_raw(
    routerd: Routerd, http: aiohttp.ClientSession, data: bytes
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{routerd.url}/v1/chat/completions",
        data=data,
        headers={"Authorization": f"Bearer {FULL_KEY}", "Content-Type": "application/json"},
    ) as resp:
        return resp.status, await resp.json()


async def test_malformed_json(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, body = await _post_raw(routerd, http, b'{"model": "echo/echo-1", "messages": [')
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert "not valid JSON" in body["error"]["message"]
    assert_clean(body)
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"]) == (400, "invalid_request")


async def test_missing_messages(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, body = await _post_raw(routerd, http, b'{"model": "echo/echo-1"}')
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["param"] == "messages"
    assert "'messages' is required" in body["error"]["message"]
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"]) == (400, "invalid_request")


async def test_body_too_large(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    big = [{"role": "user", "content": "x" * (MAX_BODY_BYTES * 2)}]
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="echo/echo-1", messages=big)
    assert info.value.status_code == 413
    assert info.value.code == "payload_too_large"
    assert_clean(info.value.body)
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"]) == (413, "payload_too_large")
    assert line["key_id"] == "full"


def _sized_body(size: int) -> bytes:
    """A valid chat request to echo/echo-1 of exactly `size` bytes."""
    head, tail = b'{"model":"echo/echo-1","messages":[{"role":"user","content":"', b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_body_size_limit_is_inclusive(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    """max_body_bytes is the largest body accepted, however the body arrives."""
    status, _ = await _post_raw(routerd, http, _sized_body(MAX_BODY_BYTES))
    assert status == 200
    status, body = await _post_raw(routerd, http, _sized_body(MAX_BODY_BYTES + 1))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")

    async def slowly(data: bytes) -> AsyncIterator[bytes]:  # the body after the head, in parts
        await asyncio.sleep(0.05)
        yield data[:100]
        await asyncio.sleep(0.05)
        yield data[100:]

    auth = {"Authorization": f"Bearer {FULL_KEY}", "Content-Type": "application/json"}
    for size, want in ((MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)):
        data = _sized_body(size)
        headers = {**auth, "Content-Length": str(len(data))}
        url = f"{routerd.url}/v1/chat/completions"
        async with http.post(url, data=slowly(data), headers=headers) as resp:
            assert resp.status == want, await resp.text()


@pytest.mark.parametrize(
    ("mode", "exc", "status", "code"),
    [
        ("401", openai.APIStatusError, 502, "provider_auth"),
        ("429", openai.RateLimitError, 429, "provider_rate_limit"),
        ("500", openai.InternalServerError, 502, "provider_unavailable"),
        ("context_length", openai.BadRequestError, 400, "context_length_exceeded"),
        ("hang", openai.InternalServerError, 504, "provider_timeout"),
        ("malformed", openai.InternalServerError, 502, "provider_unavailable"),
    ],
)
async def test_upstream_failures(
    routerd: Routerd,
    client: openai.AsyncOpenAI,
    mode: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str,
) -> None:
    routerd.fake.mode = mode
    with pytest.raises(exc) as info:
        await client.chat.completions.create(model="fake/gpt-test", messages=MESSAGES)
    err = info.value
    assert err.status_code == status
    assert err.code == code
    assert_clean(err.body)
    assert "upstream-secret" not in str(err.body)
    (line,) = await routerd.wait_journal(1)
    assert line["status"] == status
    assert line["error_code"] == code
    assert line["provider"] == "fake"
    assert line["upstream_model"] == "gpt-upstream"
    assert line["attempts"] == 1
    assert line["cost_pico_usd"] == 0


async def test_upstream_failure_streaming(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    routerd.fake.mode = "500"
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="fake/gpt-test", messages=MESSAGES, stream=True)
    assert info.value.status_code == 502
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["stream"]) == (502, True)


async def test_upstream_hang_streaming(routerd: Routerd, client: openai.AsyncOpenAI) -> None:
    routerd.fake.mode = "hang"
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="fake/gpt-test", messages=MESSAGES, stream=True)
    assert info.value.status_code == 504
    assert info.value.code == "provider_timeout"
    (line,) = await routerd.wait_journal(1)
    assert (line["status"], line["error_code"], line["stream"]) == (504, "provider_timeout", True)


async def test_upstream_retry_after_reaches_the_client(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    routerd.fake.mode = "429"
    async with http.post(
        f"{routerd.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {FULL_KEY}"},
        json={"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}]},
    ) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        body = await resp.json()
    assert body["error"]["code"] == "provider_rate_limit"
