"""Management API for users (blocked -> 403, usage newest first), budgets (any-llm shape) and
price overrides (applied to /v1/models and to the journaled cost) over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
import yaml

from tests.conftest import ECHO_KEY, FULL_KEY, Routerd
from tests.test_admin_keys import call, chat, state


async def test_blocked_user_gets_403(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, user = await call(http, "GET", f"{routerd.url}/v1/users/alice")
    assert status == 200
    assert user["source"] == "implicit"  # named by a key in keys.yaml, no users entry yet
    status, _ = await call(http, "PATCH", f"{routerd.url}/v1/users/alice", {"blocked": True})
    assert status == 404  # an implicit user is defined with POST first
    status, user = await call(
        http, "POST", f"{routerd.url}/v1/users", {"user_id": "alice", "blocked": True}
    )
    assert status == 200, user
    assert user["blocked"] is True and user["source"] == "managed"

    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=FULL_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as exc:
            await sdk.chat.completions.create(model="echo/echo-1", messages=[])
    body: Any = exc.value.body
    assert body["code"] == "permission_denied"
    assert "alice" in body["message"]
    assert await chat(routerd.url, ECHO_KEY)  # bob's key is unaffected

    status, user = await call(http, "PATCH", f"{routerd.url}/v1/users/alice", {"blocked": False})
    assert status == 200 and user["blocked"] is False
    assert await chat(routerd.url, FULL_KEY)
    assert "blocked" not in state(routerd, "users.yaml")["users"][0]


async def test_user_crud_and_budget_window(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, budget = await call(
        http,
        "POST",
        f"{routerd.url}/v1/budgets",
        {"budget_id": "daily-5", "max_budget": 5, "budget_duration_sec": 86400},
    )
    assert status == 200, budget
    body = {"user_id": "erin", "alias": "Erin", "budget_id": "daily-5", "metadata": {"x": 1}}
    status, user = await call(http, "POST", f"{routerd.url}/v1/users", body)
    assert status == 200, user
    assert user["spend"] == 0.0
    assert user["budget_started_at"].endswith("T00:00:00Z")
    assert user["next_budget_reset_at"].endswith("T00:00:00Z")
    assert user["budget_started_at"] < user["next_budget_reset_at"]
    assert user["created_at"] == user["updated_at"]
    assert user["metadata"] == {"x": 1}

    status, err = await call(http, "POST", f"{routerd.url}/v1/users", {"user_id": "erin"})
    assert status == 409
    status, err = await call(http, "PATCH", f"{routerd.url}/v1/users/erin", {"budget_id": "nope"})
    assert status == 422
    assert err["detail"][0]["loc"] == ["body", "budget_id"]
    status, err = await call(http, "DELETE", f"{routerd.url}/v1/budgets/daily-5")
    assert status == 409  # erin still names it
    assert "budget_id" in str(err["detail"])

    status, users = await call(http, "GET", f"{routerd.url}/v1/users")
    assert [u["user_id"] for u in users] == ["erin", "alice", "bob"]
    assert (await call(http, "DELETE", f"{routerd.url}/v1/users/erin"))[0] == 204
    assert (await call(http, "GET", f"{routerd.url}/v1/users/erin"))[0] == 404
    assert (await call(http, "DELETE", f"{routerd.url}/v1/budgets/daily-5"))[0] == 204


async def test_user_usage_newest_first(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=FULL_KEY, max_retries=0
    ) as sdk:
        for word in ("one", "two", "three"):
            await sdk.chat.completions.create(
                model="echo/echo-1", messages=[{"role": "user", "content": word}]
            )
    assert await chat(routerd.url, ECHO_KEY)  # bob's
    await routerd.wait_journal(4)
    status, rows = await call(http, "GET", f"{routerd.url}/v1/users/alice/usage")
    assert status == 200
    assert len(rows) == 3
    assert all(r["user_id"] == "alice" and r["api_key_id"] == "full" for r in rows)
    assert rows[0]["timestamp"] >= rows[1]["timestamp"] >= rows[2]["timestamp"]
    assert rows[0]["endpoint"] == "chat_completions"
    assert rows[0]["status"] == "success" and rows[0]["model"] == "echo/echo-1"
    assert rows[0]["total_tokens"] == rows[0]["prompt_tokens"] + rows[0]["completion_tokens"]
    journal_ids = [line["request_id"] for line in routerd.journal() if line["user"] == "alice"]
    assert [r["id"] for r in rows] == journal_ids[::-1]
    status, page = await call(http, "GET", f"{routerd.url}/v1/users/alice/usage?skip=1&limit=1")
    assert [r["id"] for r in page] == [rows[1]["id"]]
    assert (await call(http, "GET", f"{routerd.url}/v1/users/nobody/usage"))[0] == 404


async def test_budgets_any_llm_shape(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    status, made = await call(http, "POST", f"{routerd.url}/v1/budgets", {"max_budget": 10})
    assert status == 200, made
    assert made["budget_duration_sec"] is None and made["period"] == "total"
    assert made["scope"] == "per_user" and made["source"] == "managed"
    status, hourly = await call(
        http,
        "POST",
        f"{routerd.url}/v1/budgets",
        {
            "budget_id": "tag-hourly",
            "max_budget": 2.5,
            "budget_duration_sec": 3600,
            "scope": {"tag": "search"},
        },
    )
    assert status == 200
    assert hourly["budget_duration_sec"] == 3600 and hourly["period"] == "3600s"
    entries = {b["id"]: b for b in state(routerd, "budgets.yaml")["budgets"]}
    assert entries[made["budget_id"]]["limit_usd"] == 10
    assert entries["tag-hourly"]["period"] == "3600s"
    assert entries["tag-hourly"]["scope"] == {"tag": "search"}

    status, patched = await call(
        http, "PATCH", f"{routerd.url}/v1/budgets/tag-hourly", {"max_budget": 3}
    )
    assert status == 200
    assert patched["max_budget"] == 3 and patched["budget_duration_sec"] == 3600
    status, big = await call(http, "GET", f"{routerd.url}/v1/budgets/big")
    assert big["source"] == "file" and big["scope"] == "global"
    status, err = await call(http, "POST", f"{routerd.url}/v1/budgets", {"budget_duration_sec": 60})
    assert status == 422 and err["detail"][0]["loc"] == ["body", "max_budget"]
    status, listed = await call(http, "GET", f"{routerd.url}/v1/budgets")
    assert [b["budget_id"] for b in listed] == ["big", made["budget_id"], "tag-hourly"]


async def test_price_override_changes_cost(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=FULL_KEY, max_retries=0
    ) as sdk:
        model = await sdk.models.retrieve("fake/gpt-test")
        assert model.model_extra and model.model_extra["pricing"]["prompt"] == 0.40

        body = {
            "model_key": "fake:gpt-test",
            "input_price_per_million": 4,
            "output_price_per_million": 16,
        }
        status, price = await call(http, "POST", f"{routerd.url}/v1/pricing", body)
        assert status == 200, price
        assert price["model_key"] == "fake/gpt-test" and price["input_price_per_million"] == 4
        model = await sdk.models.retrieve("fake/gpt-test")
        assert model.model_extra and model.model_extra["pricing"]["completion"] == 16
        reply = await sdk.chat.completions.create(
            model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.usage is not None

        status, price = await call(http, "GET", f"{routerd.url}/v1/pricing/fake/gpt-test")
        assert status == 200 and price["output_price_per_million"] == 16
        assert (await call(http, "DELETE", f"{routerd.url}/v1/pricing/fake/gpt-test"))[0] == 204
        model = await sdk.models.retrieve("fake/gpt-test")
        assert model.model_extra and model.model_extra["pricing"]["prompt"] == 0.40

    (line,) = await routerd.wait_journal(1)
    usage = reply.usage
    assert usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert cached > 0  # the override leaves the catalog's cached price (0.10) in place
    expected = (
        (usage.prompt_tokens - cached) * 4_000_000
        + cached * 100_000
        + usage.completion_tokens * 16_000_000
    )
    assert line["cost_pico_usd"] == expected

    status, err = await call(
        http,
        "POST",
        f"{routerd.url}/v1/pricing",
        {"model_key": "nope/model", "input_price_per_million": 1, "output_price_per_million": 1},
    )
    assert status == 422 and err["detail"][0]["loc"] == ["body", "model_key"]
    status, err = await call(
        http,
        "POST",
        f"{routerd.url}/v1/pricing",
        {
            "model_key": "fake/gpt-test",
            "input_price_per_million": 0.0000001,
            "output_price_per_million": 1,
        },
    )
    assert status == 422 and err["detail"][0]["loc"] == ["body", "input_price_per_million"]
    assert (await call(http, "GET", f"{routerd.url}/v1/pricing"))[1] == []


async def test_human_users_and_pricing_files(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    daemon = yaml.safe_load(routerd.config_path.read_text())
    daemon["users"] = "users.yaml"
    daemon["pricing"] = ["pricing.yaml"]
    routerd.config_path.write_text(yaml.safe_dump(daemon))
    (routerd.root / "users.yaml").write_text("users:\n  - {id: bob, blocked: true}\n")
    (routerd.root / "pricing.yaml").write_text(
        "pricing:\n  - {model: fake/gpt-test, prompt: 1, completion: 2}\n"
    )
    ok, message = await routerd.gateway.reload()
    assert ok, message
    with pytest.raises(openai.PermissionDeniedError):
        await chat(routerd.url, ECHO_KEY)
    status, err = await call(http, "PATCH", f"{routerd.url}/v1/users/bob", {"blocked": False})
    assert status == 409 and err["error"]["file"] == str(routerd.root / "users.yaml")
    status, prices = await call(http, "GET", f"{routerd.url}/v1/pricing")
    assert [(p["model_key"], p["source"]) for p in prices] == [("fake/gpt-test", "file")]
    body = {
        "model_key": "fake/gpt-test",
        "input_price_per_million": 3,
        "output_price_per_million": 3,
    }
    status, err = await call(http, "POST", f"{routerd.url}/v1/pricing", body)
    assert status == 409


async def test_a_users_budget_caps_that_user_alone_and_shows_its_spend(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    # 500 micro-USD a request on fake/gpt-test (see test_server_budgets), ~650 at worst case.
    budget = {"budget_id": "per-user", "max_budget": 0.0009, "budget_duration_sec": 86400}
    assert (await call(http, "POST", f"{routerd.url}/v1/budgets", budget))[0] == 200
    status, created = await call(
        http, "POST", f"{routerd.url}/v1/keys", {"key_name": "f", "user_id": "frank"}
    )
    assert status == 200, created
    body = {"budget_id": "per-user"}
    assert (await call(http, "PATCH", f"{routerd.url}/v1/users/frank", body))[0] == 200
    messages: Any = [{"role": "user", "content": "z" * 1300}]
    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=created["key"], max_retries=0
    ) as sdk:
        await sdk.chat.completions.create(model="fake/gpt-test", messages=messages, max_tokens=50)
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.chat.completions.create(
                model="fake/gpt-test", messages=messages, max_tokens=50
            )
    assert refused.value.status_code == 402
    error: Any = refused.value.body
    assert error["code"] == "insufficient_credits"
    assert error["budget_id"] == "per-user@user:frank"
    status, user = await call(http, "GET", f"{routerd.url}/v1/users/frank")
    assert status == 200 and user["spend"] == pytest.approx(0.0005)
    assert await chat(routerd.url, FULL_KEY)  # alice has no such budget
