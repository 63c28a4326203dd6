"""Management API for keys over real HTTP: create -> use at once -> revoke -> 401; restart keeps
the state; a storm of 50 concurrent creates loses none; 401 / 409 / 422; no plaintext anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
import yaml

from routerd.config.load import load_all
from routerd.metrics import Metrics
from routerd.server.gateway import Gateway
from tests.conftest import FULL_KEY, MASTER_KEY, Routerd
from tests.serving import RouterdServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, url, json=body, headers=ADMIN if headers is None else headers
    ) as resp:
        text = await resp.text()
        return resp.status, (yaml.safe_load(text) if text else None)


async def chat(base_url: str, key: str) -> str:
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
        reply = await sdk.chat.completions.create(model="echo/echo-1", messages=MESSAGES)
    return reply.choices[0].message.content or ""


def state(routerd: Routerd, name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((routerd.root / "state" / name).read_text())
    return data


async def test_create_use_revoke(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    body = {
        "key_name": "ci bot",
        "user_id": "carol",
        "metadata": {"team": "ci"},
        "models": ["echo/*"],
    }
    status, created = await call(http, "POST", f"{routerd.url}/v1/keys", body)
    assert status == 200, created
    plaintext = created["key"]
    assert plaintext.startswith("sk-rd-")
    assert created["key_name"] == "ci bot"
    assert created["user_id"] == "carol"
    assert created["is_active"] is True
    assert created["metadata"] == {"team": "ci"}
    assert created["source"] == "managed"
    assert created["created_at"].endswith("Z")

    assert await chat(routerd.url, plaintext)  # usable at once, no reload needed

    status, info = await call(http, "GET", f"{routerd.url}/v1/keys/{created['id']}")
    assert status == 200
    assert "key" not in info
    assert info["last_used_at"] is not None
    # any-llm creates the user of a new key; routerd writes it to the managed users.yaml
    assert [u["id"] for u in state(routerd, "users.yaml")["users"]] == ["carol"]

    status, _ = await call(http, "DELETE", f"{routerd.url}/v1/keys/{created['id']}")
    assert status == 204
    with pytest.raises(openai.AuthenticationError):
        await chat(routerd.url, plaintext)
    status, _ = await call(http, "GET", f"{routerd.url}/v1/keys/{created['id']}")
    assert status == 404
    assert state(routerd, "keys.yaml")["keys"] == []


async def test_patch_key(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, created = await call(http, "POST", f"{routerd.url}/v1/keys", {"id": "tmp"})
    assert status == 200
    url = f"{routerd.url}/v1/keys/tmp"
    status, info = await call(http, "PATCH", url, {"is_active": False, "key_name": "paused"})
    assert status == 200, info
    assert info["is_active"] is False and info["key_name"] == "paused"
    with pytest.raises(openai.AuthenticationError):
        await chat(routerd.url, created["key"])
    status, info = await call(
        http, "PATCH", url, {"is_active": True, "expires_at": "2099-01-01T00:00:00+00:00"}
    )
    assert status == 200
    assert info["expires_at"] == "2099-01-01T00:00:00Z"
    assert info["key_name"] == "paused"  # a field left out (or null) is unchanged
    assert await chat(routerd.url, created["key"])
    status, info = await call(http, "PATCH", url, {"expires_at": "2020-01-01T00:00:00Z"})
    assert status == 200
    with pytest.raises(openai.AuthenticationError):
        await chat(routerd.url, created["key"])


async def test_restart_keeps_state(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, created = await call(
        http, "POST", f"{routerd.url}/v1/keys", {"id": "k1", "user_id": "dave"}
    )
    assert status == 200
    assert (await call(http, "PATCH", f"{routerd.url}/v1/users/dave", {"alias": "Dave"}))[0] == 200
    status, _ = await call(
        http,
        "POST",
        f"{routerd.url}/v1/budgets",
        {"budget_id": "b1", "max_budget": 5, "budget_duration_sec": 3600},
    )
    assert status == 200
    body = {
        "model_key": "fake/gpt-test",
        "input_price_per_million": 1,
        "output_price_per_million": 2,
    }
    assert (await call(http, "POST", f"{routerd.url}/v1/pricing", body))[0] == 200
    assert await chat(routerd.url, created["key"])  # k1 has a last_used_at to rebuild
    before = {
        p: (await call(http, "GET", f"{routerd.url}/v1/{p}"))[1]
        for p in ("keys", "users", "budgets", "pricing")
    }

    # a reload (SIGHUP path) and a restart both read the same state back
    ok, _ = await routerd.gateway.reload()
    assert ok
    await routerd.gateway.journal.flush()
    gateway = Gateway.load(routerd.config_path, Metrics())
    server = RouterdServer(gateway)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        after = {p: (await call(http, "GET", f"{url}/v1/{p}"))[1] for p in before}
        assert await chat(url, created["key"])
    finally:
        await server.close()
    used_before = {k["id"]: k["last_used_at"] for k in before["keys"]}
    used_after = {k["id"]: k["last_used_at"] for k in after["keys"]}
    assert used_before["k1"] is not None
    for key_id, when in used_before.items():  # rebuilt from the journal (millisecond precision)
        assert (when is None) == (used_after[key_id] is None)
        assert when is None or when[:19] == used_after[key_id][:19]
    for listing in (before, after):
        for entry in listing["keys"]:
            entry["last_used_at"] = None
    assert after == before
    assert {k["id"] for k in after["keys"]} >= {"full", "k1"}
    assert [u["alias"] for u in after["users"] if u["user_id"] == "dave"] == ["Dave"]


async def test_storm_of_50_creates_loses_none(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    async def create(i: int) -> tuple[int, Any]:
        return await call(
            http,
            "POST",
            f"{routerd.url}/v1/keys",
            {"key_name": f"storm-{i}", "user_id": f"u{i % 7}"},
        )

    results = await asyncio.gather(*(create(i) for i in range(50)))
    assert [status for status, _ in results] == [200] * 50
    ids = {body["id"] for _, body in results}
    assert len(ids) == 50
    # the file is valid YAML, valid against the schema, and holds all 50
    doc = state(routerd, "keys.yaml")
    assert {entry["id"] for entry in doc["keys"]} == ids
    loaded = load_all(routerd.config_path)
    assert ids <= {k.id for k in loaded.keys}
    assert {u.id for u in loaded.users} == {f"u{i}" for i in range(7)}
    status, listed = await call(http, "GET", f"{routerd.url}/v1/keys?limit=1000")
    assert status == 200
    assert ids <= {k["id"] for k in listed}
    # every key works, served by the table that is live now
    replies = await asyncio.gather(*(chat(routerd.url, body["key"]) for _, body in results[:10]))
    assert all(replies)
    assert not list((routerd.root / "state").glob(".*.tmp"))


async def test_master_key_required(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    url = f"{routerd.url}/v1/keys"
    for headers in ({}, {"Authorization": f"Bearer {FULL_KEY}"}, {"Authorization": "Bearer nope"}):
        status, body = await call(http, "GET", url, headers=headers)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert body["detail"] == "invalid master key" or "missing" in body["detail"]
        status, _ = await call(http, "POST", url, {"key_name": "x"}, headers=headers)
        assert status == 401
    assert not (routerd.root / "state" / "keys.yaml").exists()
    # any-llm-gateway's own header works too
    status, _ = await call(http, "GET", url, headers={"X-AnyLLM-Key": f"Bearer {MASTER_KEY}"})
    assert status == 200


async def test_file_owned_entries_answer_409(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    keys_file = routerd.root / "keys.yaml"
    original = keys_file.read_bytes()
    status, info = await call(http, "GET", f"{routerd.url}/v1/keys/full")
    assert status == 200
    assert info["source"] == "file" and info["source_file"] == str(keys_file)
    for method, body in (("PATCH", {"is_active": False}), ("DELETE", None)):
        status, err = await call(http, method, f"{routerd.url}/v1/keys/full", body)
        assert status == 409
        assert err["error"]["code"] == "conflict"
        assert err["error"]["file"] == str(keys_file)
        assert str(keys_file) in err["detail"]
    status, err = await call(http, "POST", f"{routerd.url}/v1/keys", {"id": "full"})
    assert status == 409 and err["error"]["file"] == str(keys_file)
    status, err = await call(http, "PATCH", f"{routerd.url}/v1/budgets/big", {"max_budget": 1})
    assert status == 409 and err["error"]["file"].endswith("budgets.yaml")
    assert keys_file.read_bytes() == original
    assert await chat(routerd.url, FULL_KEY)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"key_name": 5}, ["body", "key_name"]),
        ({"colour": "red"}, ["body", "colour"]),
        ({"expires_at": "next tuesday"}, ["body", "expires_at"]),
        ({"budgets": ["nope"]}, ["body", "budgets"]),
        ({"models": ["echo/*"], "limits": {"rpm": 0}}, ["body", "limits", "rpm"]),
        ({"id": "bad id!"}, ["body", "id"]),
    ],
)
async def test_invalid_bodies_answer_422(
    routerd: Routerd, http: aiohttp.ClientSession, body: dict[str, Any], loc: list[str]
) -> None:
    status, err = await call(http, "POST", f"{routerd.url}/v1/keys", body)
    assert status == 422, err
    assert err["error"]["code"] == "validation_error"
    assert err["detail"][0]["loc"] == loc
    assert not (routerd.root / "state" / "keys.yaml").exists()


async def test_paging_and_bad_query(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, keys = await call(http, "GET", f"{routerd.url}/v1/keys?skip=1&limit=2")
    assert status == 200
    assert [k["id"] for k in keys] == ["echo-only", "off"]
    status, err = await call(http, "GET", f"{routerd.url}/v1/keys?limit=5000")
    assert status == 422 and err["detail"][0]["loc"] == ["query", "limit"]


async def test_no_plaintext_anywhere(
    routerd: Routerd, http: aiohttp.ClientSession, capfd: pytest.CaptureFixture[str]
) -> None:
    plaintexts = []
    for i in range(3):
        status, created = await call(http, "POST", f"{routerd.url}/v1/keys", {"key_name": f"k{i}"})
        assert status == 200
        plaintexts.append(created["key"])
        assert await chat(routerd.url, created["key"])
    status, created = await call(
        http, "POST", f"{routerd.url}/v1/keys", {"key_name": "bad", "budgets": ["x"]}
    )
    assert status == 422
    await routerd.wait_journal(3)
    status, keys = await call(http, "GET", f"{routerd.url}/v1/keys")
    listed = str(keys)
    one = str((await call(http, "GET", f"{routerd.url}/v1/keys/{keys[-1]['id']}"))[1])
    metrics = await routerd.metrics_text(http)
    files = "".join(p.read_text() for p in routerd.root.rglob("*") if p.is_file())
    hidden = "".join(p.read_text() for p in (routerd.root / "state").glob(".*") if p.is_file())
    out, err = capfd.readouterr()
    for plaintext in plaintexts:
        for where in (listed, one, metrics, files, hidden, out, err):
            assert plaintext not in where


async def test_any_llm_header_for_client_keys(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    status, created = await call(http, "POST", f"{routerd.url}/v1/keys", {"models": ["echo/*"]})
    assert status == 200
    headers = {"X-AnyLLM-Key": f"Bearer {created['key']}"}
    body = {"model": "echo/echo-1", "messages": MESSAGES}
    async with http.post(f"{routerd.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
    async with http.post(
        f"{routerd.url}/v1/chat/completions", json=body, headers={"X-AnyLLM-Key": "Bearer nope"}
    ) as resp:
        assert resp.status == 401
