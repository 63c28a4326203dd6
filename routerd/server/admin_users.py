"""Management API for users (`/v1/users`, `/v1/users/{id}/usage`) and budgets (`/v1/budgets`), in
any-llm-gateway's paths and shapes.

Users: alias, blocked (their keys get 403 `permission_denied`), budget_id, metadata. A user named
only by a key's `user` (no users entry) is listed with `source: implicit`; POST defines it.
`spend` comes from `user_spend_usd` (its budget instance in the ledger); `budget_started_at` and
`next_budget_reset_at` are the UTC window of the user's budget now. Budgets: any-llm's
`max_budget` / `budget_duration_sec` map onto `limit_usd` / period `"<N>s"` (null = `total`);
budgets created here default to scope `per_user`, a template capping each user whose budget_id
names it (any-llm semantics), unless the body gives routerd's `scope`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from routerd.config.model import BudgetConfig, LoadedConfig, UserConfig
from routerd.errors import ErrorCode, RouterdError
from routerd.managed import entries
from routerd.managed.store import Docs
from routerd.metering.history import user_records
from routerd.metering.pricing import pico_to_usd
from routerd.metering.windows import window_for
from routerd.server.admin_common import (
    ID_PATTERN,
    NULLABLE_STRING,
    commit,
    invalid,
    iso,
    json_body,
    page,
    schema_validator,
    source_fields,
)
from routerd.server.gateway import Gateway
from routerd.server.http import Reply, Request, json_reply
from routerd.server.info import require_master_key
from routerd.server.pipeline import GATEWAY

_USER_FIELDS: dict[str, Any] = {
    "alias": NULLABLE_STRING,
    "blocked": {"type": ["boolean", "null"]},
    "budget_id": {"type": ["string", "null"], "minLength": 1},
    "metadata": {"type": ["object", "null"]},
}
CREATE_USER = schema_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["user_id"],
        "properties": {
            **_USER_FIELDS,
            "user_id": {"type": "string", "minLength": 1, "maxLength": 256},
        },
    }
)
UPDATE_USER = schema_validator(
    {"type": "object", "additionalProperties": False, "properties": _USER_FIELDS}
)
_SCOPE = {
    "oneOf": [
        {"enum": ["global", "per_user"]},
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {
                k: {"type": "string", "minLength": 1} for k in ("key", "user", "tag", "model")
            },
        },
    ]
}
_BUDGET_FIELDS: dict[str, Any] = {
    "max_budget": {"type": ["number", "null"], "minimum": 0},
    "budget_duration_sec": {"type": ["integer", "null"], "exclusiveMinimum": 0},
    "period": {"type": "string", "pattern": "^(daily|weekly|monthly|total|[1-9][0-9]*s)$"},
    "scope": _SCOPE,
}
CREATE_BUDGET = schema_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {**_BUDGET_FIELDS, "budget_id": {"type": "string", "pattern": ID_PATTERN}},
    }
)
UPDATE_BUDGET = schema_validator(
    {"type": "object", "additionalProperties": False, "properties": _BUDGET_FIELDS}
)


async def user_spend_usd(gateway: Gateway, user: UserConfig) -> float:
    """The user's spend in the current window of its budget (its instance in the ledger)."""
    return pico_to_usd(await gateway.ledger.user_spend(user.id, user.budget_id))


def _budget(config: LoadedConfig, budget_id: str | None) -> BudgetConfig | None:
    return next((b for b in config.budgets if b.id == budget_id), None)


async def user_info(user: UserConfig, gateway: Gateway) -> dict[str, Any]:
    """any-llm's UserResponse plus `source`."""
    config = gateway.table.config
    budget = _budget(config, user.budget_id)
    window = window_for(budget.period, budget.period_seconds, datetime.now(UTC)) if budget else None
    source = (
        source_fields(user.source, config, "users")
        if user.source
        else {"source": "implicit", "source_file": None}
    )
    return {
        "user_id": user.id,
        "alias": user.alias,
        "spend": await user_spend_usd(gateway, user),
        "budget_id": user.budget_id,
        "budget_started_at": iso(window.start) if window else None,
        "next_budget_reset_at": iso(window.end) if window else None,
        "blocked": user.blocked,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "metadata": user.metadata,
        **source,
    }


def all_users(config: LoadedConfig) -> list[UserConfig]:
    """Defined users, then users only named by keys (implicit), in file order."""
    users = list(config.users)
    known = {u.id for u in users}
    for key in config.keys:
        if key.user is not None and key.user not in known:
            known.add(key.user)
            users.append(UserConfig(id=key.user))
    return users


def _user(config: LoadedConfig, user_id: str) -> UserConfig:
    for user in all_users(config):
        if user.id == user_id:
            return user
    raise RouterdError(ErrorCode.not_found, f"no user {user_id!r}")


def _user_fields(body: dict[str, Any]) -> dict[str, Any]:
    out = {
        name: body[name]
        for name in ("alias", "blocked", "budget_id", "metadata")
        if body.get(name) is not None
    }
    if out.get("blocked") is False:
        out["blocked"] = None  # the default: leave it out of the file
    return out


async def list_users(request: Request) -> Reply:
    require_master_key(request)
    skip, limit = page(request)
    gateway = request.app[GATEWAY]
    users = all_users(gateway.table.config)[skip : skip + limit]
    return json_reply([await user_info(u, gateway) for u in users])


async def get_user(request: Request) -> Reply:
    require_master_key(request)
    gateway = request.app[GATEWAY]
    return json_reply(
        await user_info(_user(gateway.table.config, request.match_info["user_id"]), gateway)
    )


async def create_user(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, CREATE_USER)
    user_id = body["user_id"]
    fields = {k: v for k, v in _user_fields(body).items() if v is not None}

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.add(docs, current, "users", {"id": user_id, **fields})

    await commit(request, mutate)
    gateway = request.app[GATEWAY]
    return json_reply(await user_info(_user(gateway.table.config, user_id), gateway))


async def update_user(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, UPDATE_USER)
    user_id = request.match_info["user_id"]
    changes = _user_fields(body)
    if changes.get("alias") == "":
        changes["alias"] = None

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.update(docs, current, "users", user_id, changes)

    await commit(request, mutate)
    gateway = request.app[GATEWAY]
    return json_reply(await user_info(_user(gateway.table.config, user_id), gateway))


async def delete_user(request: Request) -> Reply:
    require_master_key(request)
    user_id = request.match_info["user_id"]

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "users", user_id)

    await commit(request, mutate)
    return Reply(status=204)


def _usage_row(record: dict[str, Any]) -> dict[str, Any]:
    """One journal line in any-llm's UsageLogResponse shape, plus routerd's exact fields."""
    prompt, completion = record.get("prompt_tokens"), record.get("completion_tokens")
    status = record.get("status") or 0
    return {
        "id": record.get("request_id"),
        "user_id": record.get("user"),
        "api_key_id": record.get("key_id"),
        "timestamp": record.get("ts"),
        "model": record.get("resolved_model") or record.get("model"),
        "provider": record.get("provider"),
        "endpoint": record.get("ingress"),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": (prompt or 0) + (completion or 0),
        "cost": record.get("cost_usd"),
        "status": "success" if status < 400 else "error",
        "error_message": record.get("error_code"),
        "status_code": status,
        "cost_pico_usd": record.get("cost_pico_usd"),
    }


async def user_usage(request: Request) -> Reply:
    require_master_key(request)
    skip, limit = page(request)
    gateway = request.app[GATEWAY]
    user = _user(gateway.table.config, request.match_info["user_id"])
    directory = gateway.table.config.daemon.journal.dir
    records = await asyncio.to_thread(user_records, directory, user.id, skip, limit)
    return json_reply([_usage_row(r) for r in records])


def _duration(budget: BudgetConfig) -> int | None:
    """any-llm's budget_duration_sec: the current window's length (None for `total`)."""
    window = window_for(budget.period, budget.period_seconds, datetime.now(UTC))
    if window.start is None or window.end is None:
        return None
    return int((window.end - window.start).total_seconds())


def budget_info(budget: BudgetConfig, config: LoadedConfig) -> dict[str, Any]:
    scope = budget.scope
    return {
        "budget_id": budget.id,
        "max_budget": budget.limit_usd,
        "budget_duration_sec": _duration(budget),
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
        "period": budget.period,
        "scope": scope.kind if scope.value is None else {scope.kind: scope.value},
        **source_fields(budget.source, config, "budgets"),
    }


def _budget_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.get("max_budget") is not None:
        out["limit_usd"] = body["max_budget"]
    elif creating:
        raise invalid(
            [
                {
                    "loc": ["body", "max_budget"],
                    "msg": "routerd budgets need a limit in USD",
                    "type": "missing",
                }
            ]
        )
    if "period" in body:
        out["period"] = body["period"]
    elif body.get("budget_duration_sec") is not None:
        out["period"] = f"{body['budget_duration_sec']}s"
    elif creating:
        out["period"] = "total"
    if "scope" in body:
        out["scope"] = body["scope"]
    elif creating:
        out["scope"] = "per_user"
    return out


def _find_budget(config: LoadedConfig, budget_id: str) -> BudgetConfig:
    budget = _budget(config, budget_id)
    if budget is None:
        raise RouterdError(ErrorCode.not_found, f"no budget {budget_id!r}")
    return budget


async def list_budgets(request: Request) -> Reply:
    require_master_key(request)
    skip, limit = page(request)
    config = request.app[GATEWAY].table.config
    return json_reply([budget_info(b, config) for b in config.budgets[skip : skip + limit]])


async def get_budget(request: Request) -> Reply:
    require_master_key(request)
    config = request.app[GATEWAY].table.config
    return json_reply(budget_info(_find_budget(config, request.match_info["budget_id"]), config))


async def create_budget(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, CREATE_BUDGET)
    budget_id = body.get("budget_id") or str(uuid.uuid4())
    entry = {"id": budget_id, **_budget_fields(body, creating=True)}

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.add(docs, current, "budgets", entry)

    await commit(request, mutate)
    config = request.app[GATEWAY].table.config
    return json_reply(budget_info(_find_budget(config, budget_id), config))


async def update_budget(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, UPDATE_BUDGET)
    budget_id = request.match_info["budget_id"]
    changes = _budget_fields(body, creating=False)

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.update(docs, current, "budgets", budget_id, changes)

    await commit(request, mutate)
    config = request.app[GATEWAY].table.config
    return json_reply(budget_info(_find_budget(config, budget_id), config))


async def delete_budget(request: Request) -> Reply:
    require_master_key(request)
    budget_id = request.match_info["budget_id"]

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "budgets", budget_id)

    await commit(request, mutate)
    return Reply(status=204)
