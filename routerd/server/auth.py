"""Client authentication and model admission against one table snapshot."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from routerd.errors import ErrorCode, RouterdError
from routerd.server.http import Request
from routerd.table import KeyEntry, ModelRoute, RoutingTable


def presented_token(request: Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    anyllm = request.headers.get("X-AnyLLM-Key", "")  # any-llm-gateway clients: "Bearer <key>"
    token = anyllm[7:] if anyllm[:7].lower() == "bearer " else anyllm
    return request.headers.get("x-api-key") or token.strip() or None


def authenticate(request: Request, table: RoutingTable) -> KeyEntry:
    token = presented_token(request)
    if not token:
        raise RouterdError(
            ErrorCode.invalid_api_key,
            "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
        )
    entry = table.keys_by_hash.get(hashlib.sha256(token.encode()).hexdigest())
    if entry is None:
        raise RouterdError(ErrorCode.invalid_api_key, "invalid API key")
    key = entry.config
    if key.disabled:
        raise RouterdError(ErrorCode.invalid_api_key, f"API key {key.id!r} is disabled")
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise RouterdError(ErrorCode.invalid_api_key, f"API key {key.id!r} has expired")
    if entry.blocked:
        raise RouterdError(ErrorCode.permission_denied, f"user {key.user!r} is blocked")
    return entry


def admit_model(table: RoutingTable, key: KeyEntry, name: str) -> ModelRoute:
    route = table.resolve(name)
    if route is None:
        raise RouterdError(
            ErrorCode.model_not_found,
            f"model {name!r} does not exist; GET /v1/models lists the models you can use",
            param="model",
        )
    if route.id not in key.allowed_models:
        raise RouterdError(
            ErrorCode.model_not_allowed,
            f"API key {key.config.id!r} may not use model {route.id!r}",
            param="model",
        )
    if route.unavailable_reason:
        raise RouterdError(
            ErrorCode.provider_unavailable, f"model {route.id!r} has {route.unavailable_reason}"
        )
    return route
