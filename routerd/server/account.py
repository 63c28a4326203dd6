"""Spend read APIs: `GET /v1/key` (the calling key, OpenRouter shape), `GET /admin/budgets` and
`GET /admin/usage` (master key).

`/v1/key` follows OpenRouter's `GET /api/v1/key` fields (label, usage, usage_daily/weekly/monthly,
limit, limit_remaining, limit_reset, rate_limit, expires_at) and adds routerd's own (key_id,
user, tags, budgets, rate_limits). `limit` is the budget of the key that has the least room left
(the one that would refuse first). `usage` counts from the ledger's replay horizon: the whole
journal when a `total` budget exists, else the oldest live window (at least the current month).
`/admin/usage` aggregates the journal files with the same code as `routerd usage`, after flushing
the writer, so both agree with the ledger.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.journal import iter_journal
from routerd.metering.ledger import BudgetStatus
from routerd.metering.pricing import pico_to_usd
from routerd.metering.report import GROUPS, aggregate
from routerd.metering.usage import format_ts
from routerd.server.auth import authenticate
from routerd.server.gateway import Gateway
from routerd.server.http import Reply, Request, json_reply
from routerd.server.info import require_master_key
from routerd.server.pipeline import GATEWAY


def budget_view(status: BudgetStatus) -> dict[str, Any]:
    rule = status.rule
    scope = rule.config.scope
    return {
        "id": rule.id,
        "limit_usd": rule.config.limit_usd,
        "period": rule.config.period,
        "scope": scope.kind if scope.value is None else {scope.kind: scope.value},
        "listed_by": sorted(rule.listed_by),
        "spent_usd": pico_to_usd(status.spent),
        "reserved_usd": pico_to_usd(status.reserved),
        "remaining_usd": pico_to_usd(status.remaining),
        "spent_pico_usd": status.spent,
        "window_start": format_ts(status.window.start) if status.window.start else None,
        "resets_at": format_ts(status.window.end) if status.window.end else None,
        "source": str(rule.config.source) if rule.config.source else None,
    }


async def _statuses(gateway: Gateway, rules: Any) -> list[BudgetStatus]:
    return [await gateway.ledger.status(rule) for rule in rules]


async def key_info(request: Request) -> Reply:
    gateway = request.app[GATEWAY]
    entry = authenticate(request, gateway.table)
    key = entry.config
    usage = await gateway.ledger.key_usage(key.id)
    statuses = await _statuses(gateway, entry.budgets)
    tightest = min(statuses, key=lambda s: s.remaining, default=None)
    limits = key.limits
    data: dict[str, Any] = {
        "label": key.id,
        "usage": pico_to_usd(usage["total"]),
        "usage_daily": pico_to_usd(usage["daily"]),
        "usage_weekly": pico_to_usd(usage["weekly"]),
        "usage_monthly": pico_to_usd(usage["monthly"]),
        "limit": tightest.rule.config.limit_usd if tightest else None,
        "limit_remaining": pico_to_usd(tightest.remaining) if tightest else None,
        "limit_reset": _limit_reset(tightest),
        "rate_limit": {
            "requests": limits.rpm if limits.rpm is not None else -1,
            "interval": "1m",
            "note": "requests per minute of this key (-1: no limit)",
        },
        "expires_at": format_ts(key.expires_at) if key.expires_at else None,
        "is_free_tier": False,
        "is_management_key": False,
        "is_provisioning_key": False,
        "include_byok_in_limit": False,
        "byok_usage": 0.0,
        "byok_usage_daily": 0.0,
        "byok_usage_weekly": 0.0,
        "byok_usage_monthly": 0.0,
        "key_id": key.id,
        "user": key.user,
        "tags": list(key.tags),
        "limit_resets_at": (
            format_ts(tightest.window.end) if tightest and tightest.window.end else None
        ),
        "budgets": [budget_view(s) for s in statuses],
        "rate_limits": {"rpm": limits.rpm, "tpm": limits.tpm, "concurrency": limits.concurrency},
    }
    return json_reply({"data": data})


def _limit_reset(status: BudgetStatus | None) -> str | None:
    if status is None or status.rule.config.period == "total":
        return None
    return status.rule.config.period


async def admin_budgets(request: Request) -> Reply:
    require_master_key(request)
    gateway = request.app[GATEWAY]
    statuses = await _statuses(gateway, gateway.table.budgets.values())
    return json_reply({"data": [budget_view(s) for s in statuses]})


def _day(request: Request, name: str) -> date | None:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RouterdError(
            ErrorCode.invalid_request, f"'{name}' must be a UTC day YYYY-MM-DD", param=name
        ) from None


async def admin_usage(request: Request) -> Reply:
    require_master_key(request)
    gateway = request.app[GATEWAY]
    by = request.query.get("group_by", "key")
    if by not in GROUPS:
        raise RouterdError(
            ErrorCode.invalid_request, f"'group_by' must be one of {', '.join(GROUPS)}",
            param="group_by",
        )  # fmt: skip
    since, until = _day(request, "from"), _day(request, "to")
    await gateway.journal.flush()
    directory = gateway.journal.directory
    rows = await asyncio.to_thread(
        lambda: aggregate(iter_journal(directory, since, until), by, since, until)
    )
    return json_reply(
        {
            "group_by": by,
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "data": [row.as_dict() for row in rows],
        }
    )
