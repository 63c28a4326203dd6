"""Usage aggregation over journal records (pure): group by key, user, tag, model or day.

Used offline by `routerd usage` and by `GET /admin/usage` in the daemon, so both agree. Records
are journal lines as dicts; time bounds are inclusive UTC days on the record's `ts`. A record
with several tags counts once under each tag; a record without the grouped field counts under
"-". Money stays an integer in pico-USD until display.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from routerd.metering.pricing import pico_to_usd

GroupBy = Literal["key", "user", "tag", "model", "day"]
GROUPS: tuple[GroupBy, ...] = ("key", "user", "tag", "model", "day")
_TOKEN_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@dataclass(slots=True)
class UsageRow:
    group: str
    requests: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TOKEN_FIELDS, 0))
    cost_pico_usd: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.requests += 1
        if int(record.get("status") or 0) >= 400:
            self.errors += 1
        for name in _TOKEN_FIELDS:
            self.tokens[name] += int(record.get(name) or 0)
        self.cost_pico_usd += int(record.get("cost_pico_usd") or 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "requests": self.requests,
            "errors": self.errors,
            **self.tokens,
            "cost_pico_usd": self.cost_pico_usd,
            "cost_usd": pico_to_usd(self.cost_pico_usd),
        }


def _groups(record: dict[str, Any], by: GroupBy) -> Iterator[str]:
    if by == "day":
        yield str(record.get("ts", ""))[:10] or "-"
    elif by == "tag":
        yield from (record.get("tags") or ["-"])
    elif by == "key":
        yield record.get("key_id") or "-"
    elif by == "model":
        yield record.get("resolved_model") or record.get("model") or "-"
    else:
        yield record.get("user") or "-"


def aggregate(
    records: Iterable[dict[str, Any]],
    by: GroupBy,
    since: date | None = None,
    until: date | None = None,
) -> list[UsageRow]:
    """Rows sorted by cost, then requests, both descending."""
    rows: dict[str, UsageRow] = {}
    low = since.isoformat() if since else ""
    high = until.isoformat() if until else "9999"
    for record in records:
        day = str(record.get("ts", ""))[:10]
        if not low <= day <= high:
            continue
        for group in _groups(record, by):
            row = rows.get(group)
            if row is None:
                row = rows[group] = UsageRow(group)
            row.add(record)
    return sorted(rows.values(), key=lambda r: (-r.cost_pico_usd, -r.requests, r.group))


def format_table(rows: list[UsageRow], by: GroupBy) -> str:
    header = [by, "requests", "errors", "prompt", "completion", "cached", "cost_usd"]
    lines = [header]
    for row in rows:
        t = row.tokens
        lines.append(
            [
                row.group,
                str(row.requests),
                str(row.errors),
                str(t["prompt_tokens"]),
                str(t["completion_tokens"]),
                str(t["cached_tokens"]),
                f"{pico_to_usd(row.cost_pico_usd):.6f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )
