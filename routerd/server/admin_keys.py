"""Management API for keys (`/v1/keys`) and price overrides (`/v1/pricing`), in any-llm-gateway's
paths and shapes, plus routerd's own key fields (models, tags, limits, budgets).

Keys: POST creates one and answers its plaintext once (only its sha256 is stored); GET lists and
shows (`last_used_at` from memory); PATCH changes is_active, key_name, expires_at, metadata (a
JSON null leaves a field unchanged, as in any-llm); DELETE revokes (removes the entry). Pricing:
per-model USD per 1M token overrides applied on top of providers.yaml. All writes go through
`admin_common.commit`; entries from human files answer 409 naming the file.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from routerd.config.model import KeyConfig, LoadedConfig, PriceOverride
from routerd.errors import ErrorCode, RouterdError
from routerd.managed import entries
from routerd.managed.store import Docs
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

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_KEY_FIELDS: dict[str, Any] = {
    "key_name": NULLABLE_STRING,
    "expires_at": NULLABLE_STRING,
    "metadata": {"type": ["object", "null"]},
    "models": _STRINGS,
    "tags": {**_STRINGS, "uniqueItems": True},
    "budgets": {**_STRINGS, "uniqueItems": True},
    "limits": {
        "type": "object",
        "additionalProperties": False,
        "properties": {n: {"type": "integer", "minimum": 1} for n in ("rpm", "tpm", "concurrency")},
    },
}
CREATE_KEY = schema_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_KEY_FIELDS,
            "id": {"type": "string", "pattern": ID_PATTERN},
            "user_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 256},
        },
    }
)
UPDATE_KEY = schema_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {**_KEY_FIELDS, "is_active": {"type": ["boolean", "null"]}},
    }
)
_PRICE = {"type": "number", "minimum": 0}
SET_PRICING = schema_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["model_key", "input_price_per_million", "output_price_per_million"],
        "properties": {
            "model_key": {"type": "string", "minLength": 1},
            "input_price_per_million": _PRICE,
            "output_price_per_million": _PRICE,
            "cached_input_price_per_million": _PRICE,
            "cache_write_price_per_million": _PRICE,
        },
    }
)


def _expires(value: str) -> str:
    """RFC 3339 / ISO 8601 -> `...Z` (a time without a zone is UTC); 422 if unparseable."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            [
                {
                    "loc": ["body", "expires_at"],
                    "msg": "not an ISO 8601 date-time",
                    "type": "value_error",
                }
            ]
        ) from None
    return iso(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) or ""


def _entry_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Request fields -> keys.yaml fields (null / absent fields are left out)."""
    out: dict[str, Any] = {}
    if body.get("key_name") is not None:
        out["name"] = body["key_name"]
    if body.get("expires_at") is not None:
        out["expires_at"] = _expires(body["expires_at"])
    for name in ("metadata", "models", "tags", "budgets", "limits"):
        if body.get(name) is not None:
            out[name] = body[name]
    return out


def key_info(key: KeyConfig, gateway: Gateway) -> dict[str, Any]:
    """any-llm's KeyInfo plus routerd's fields. Never the key, never its hash."""
    config = gateway.table.config
    return {
        "id": key.id,
        "key_name": key.name,
        "user_id": key.user,
        "created_at": key.created_at,
        "last_used_at": iso(gateway.last_used.get(key.id)),
        "expires_at": iso(key.expires_at),
        "is_active": not key.disabled,
        "metadata": key.metadata,
        "models": list(key.models),
        "tags": list(key.tags),
        "budgets": list(key.budgets),
        "limits": {
            n: v
            for n, v in (
                ("rpm", key.limits.rpm),
                ("tpm", key.limits.tpm),
                ("concurrency", key.limits.concurrency),
            )
            if v is not None
        },
        **source_fields(key.source, config, "keys"),
    }


def _key(gateway: Gateway, key_id: str) -> KeyConfig:
    for key in gateway.table.config.keys:
        if key.id == key_id:
            return key
    raise RouterdError(ErrorCode.not_found, f"no key {key_id!r}")


async def create_key(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, CREATE_KEY)
    plaintext, digest = entries.new_secret()
    key_id = body.get("id") or str(uuid.uuid4())
    entry = {"id": key_id, "hash": digest, **_entry_fields(body)}
    user = body.get("user_id")
    if user is not None:
        entry["user"] = user

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        if user is not None:
            entries.ensure_user(docs, current, user)
        entries.add(docs, current, "keys", entry)

    await commit(request, mutate)
    gateway = request.app[GATEWAY]
    info = key_info(_key(gateway, key_id), gateway)
    info.pop("last_used_at")
    return json_reply({**info, "key": plaintext})


async def list_keys(request: Request) -> Reply:
    require_master_key(request)
    skip, limit = page(request)
    gateway = request.app[GATEWAY]
    keys = gateway.table.config.keys[skip : skip + limit]
    return json_reply([key_info(k, gateway) for k in keys])


async def get_key(request: Request) -> Reply:
    require_master_key(request)
    gateway = request.app[GATEWAY]
    return json_reply(key_info(_key(gateway, request.match_info["key_id"]), gateway))


async def update_key(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, UPDATE_KEY)
    key_id = request.match_info["key_id"]
    changes = _entry_fields(body)
    if body.get("is_active") is not None:
        changes["disabled"] = True if not body["is_active"] else None
    if changes.get("name") == "":
        changes["name"] = None  # an empty name clears it

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.update(docs, current, "keys", key_id, changes)

    await commit(request, mutate)
    gateway = request.app[GATEWAY]
    return json_reply(key_info(_key(gateway, key_id), gateway))


async def delete_key(request: Request) -> Reply:
    require_master_key(request)
    key_id = request.match_info["key_id"]

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "keys", key_id)

    await commit(request, mutate)
    return Reply(status=204)


def price_info(override: PriceOverride, config: LoadedConfig) -> dict[str, Any]:
    p = override.pricing
    return {
        "model_key": override.model,
        "input_price_per_million": p.prompt,
        "output_price_per_million": p.completion,
        "cached_input_price_per_million": p.cached_prompt,
        "cache_write_price_per_million": p.cache_write,
        "created_at": override.created_at,
        "updated_at": override.updated_at,
        **source_fields(override.source, config, "pricing"),
    }


def model_slug(config: LoadedConfig, model_key: str) -> str:
    """A catalog slug; any-llm's `provider:model` form is accepted for `provider/model`."""
    if model_key in config.catalog.models or ":" not in model_key:
        return model_key
    slug = model_key.replace(":", "/", 1)
    return slug if slug in config.catalog.models else model_key


def _override(config: LoadedConfig, model_key: str) -> PriceOverride:
    slug = model_slug(config, model_key)
    for override in config.price_overrides:
        if override.model == slug:
            return override
    raise RouterdError(ErrorCode.not_found, f"no price override for {model_key!r}")


async def list_pricing(request: Request) -> Reply:
    require_master_key(request)
    skip, limit = page(request)
    config = request.app[GATEWAY].table.config
    return json_reply([price_info(o, config) for o in config.price_overrides[skip : skip + limit]])


async def get_pricing(request: Request) -> Reply:
    require_master_key(request)
    config = request.app[GATEWAY].table.config
    return json_reply(price_info(_override(config, request.match_info["model_key"]), config))


async def set_pricing(request: Request) -> Reply:
    require_master_key(request)
    body = await json_body(request, SET_PRICING)
    slug = model_slug(request.app[GATEWAY].table.config, body["model_key"])
    entry: dict[str, Any] = {
        "model": slug,
        "prompt": body["input_price_per_million"],
        "completion": body["output_price_per_million"],
    }
    for api_name, file_name in (
        ("cached_input_price_per_million", "cached_prompt"),
        ("cache_write_price_per_million", "cache_write"),
    ):
        if api_name in body:
            entry[file_name] = body[api_name]

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.upsert(docs, current, "pricing", entry)

    await commit(request, mutate)
    config = request.app[GATEWAY].table.config
    return json_reply(price_info(_override(config, slug), config))


async def delete_pricing(request: Request) -> Reply:
    require_master_key(request)
    slug = model_slug(request.app[GATEWAY].table.config, request.match_info["model_key"])

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "pricing", slug)

    await commit(request, mutate)
    return Reply(status=204)
