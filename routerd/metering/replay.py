"""Journal replay: rebuild spend counters from the usage journal (startup and budget changes).

Owns reading the journal files that overlap the live windows and summing their records into
(counter, window start) -> pico-USD totals, plus per-key usage and the last minute's requests and
tokens per key (to refill rate-limit buckets). It does no ledger I/O: the ledger applies the
result. Blocking file reads; callers run it in a thread.

Speed: records are first grouped by (key, user, tags, model, time bucket), so the budget rules
are evaluated once per group, not once per line. The bucket is the minute (`ts[:16]`) when every
window boundary falls on a minute, else the whole timestamp. Timestamps are compared as strings:
`format_ts` writes fixed-width UTC (`2026-11-24T10:00:00.123Z`), so string order is time order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson

from routerd.metering.budgets import BudgetRule
from routerd.metering.journal import journal_files
from routerd.metering.usage import format_ts
from routerd.metering.windows import Window, window_for

USAGE_PERIODS = ("daily", "weekly", "monthly", "total")
_READ_BYTES = 8 * 1024 * 1024
RATE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Target:
    """One counter window to rebuild and the rule deciding which records it counts."""

    counter: str
    window: Window
    rule: BudgetRule | None = None  # None: a per-key usage counter (key_id decides)
    key_id: str | None = None

    @property
    def bounds(self) -> tuple[str, str]:
        low = "" if self.window.start is None else format_ts(self.window.start)
        high = "~" if self.window.end is None else format_ts(self.window.end)
        return low, high


def usage_counter(key_id: str, period: str) -> str:
    return f"usage:key:{key_id}:{period}"


def usage_targets(key_ids: Iterable[str], now: datetime) -> list[Target]:
    return [
        Target(usage_counter(k, p), window_for(p, None, now), key_id=k)
        for k in key_ids
        for p in USAGE_PERIODS
    ]


def budget_targets(rules: Iterable[BudgetRule], now: datetime) -> list[Target]:
    return [
        Target(r.counter, window_for(r.config.period, r.config.period_seconds, now), rule=r)
        for r in rules
    ]


@dataclass(slots=True)
class ReplayResult:
    spend: dict[tuple[str, datetime | None], int] = field(default_factory=dict)
    recent: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (requests, tokens)
    request_ids: set[str] = field(default_factory=set)
    lines: int = 0
    skipped: int = 0
    files: int = 0


_Group = tuple[str | None, str | None, tuple[str, ...], str, str]


def _since(targets: Iterable[Target]) -> date | None:
    """The first journal day any target needs; `None` (every file) if one never resets."""
    starts = [t.window.start for t in targets]
    if not starts or any(s is None for s in starts):
        return None
    return min(s.date() for s in starts if s is not None)


def _minute_aligned(targets: Iterable[Target]) -> bool:
    for t in targets:
        for edge in (t.window.start, t.window.end):
            if edge is not None and (edge.second or edge.microsecond):
                return False
    return True


def _read_groups(
    paths: list[Path], bucket_len: int, result: ReplayResult, ids_since: str | None
) -> dict[_Group, list[int]]:
    """Sum every parsable record into its group: [cost_pico, requests, tokens]."""
    groups: dict[_Group, list[int]] = {}
    loads, invalid = orjson.loads, orjson.JSONDecodeError
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        result.files += 1
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                rec = loads(line)
                ts = rec["ts"]
                key = (
                    rec.get("key_id"), rec.get("user"), tuple(rec.get("tags") or ()),
                    rec.get("resolved_model") or "", ts[:bucket_len],
                )  # fmt: skip
                cost = int(rec.get("cost_pico_usd") or 0)
                tokens = int(rec.get("prompt_tokens") or 0) + int(rec.get("completion_tokens") or 0)
            except (invalid, KeyError, TypeError, ValueError, AttributeError):
                result.skipped += 1
                continue
            result.lines += 1
            if ids_since is not None and ts >= ids_since:
                result.request_ids.add(str(rec.get("request_id")))
            acc = groups.get(key)
            if acc is None:
                groups[key] = [cost, 1, tokens]
            else:
                acc[0] += cost
                acc[1] += 1
                acc[2] += tokens
    return groups


def _counts(target: Target, group: _Group) -> bool:
    key_id, user, tags, model, _ = group
    if target.rule is None:
        return key_id == target.key_id
    return target.rule.counts(key_id, user, tags, model)


def replay(
    directory: Path,
    targets: list[Target],
    now: datetime,
    ids_since: datetime | None = None,
) -> ReplayResult:
    """Sum the journal into `targets` (only files overlapping their windows are read).

    `recent` gets each key's requests and tokens of the last minute before `now`;
    `request_ids` the ids of records at or after `ids_since` (to de-duplicate records that
    were settled while the replay ran).
    """
    result = ReplayResult()
    if not targets:
        return result
    since = _since(targets)
    rate_since = format_ts(now - RATE_WINDOW)
    if since is not None:
        since = min(since, (now - RATE_WINDOW).date())
    bucket_len = 16 if _minute_aligned(targets) else 24
    paths = journal_files(directory, since=since)
    ids_from = format_ts(ids_since) if ids_since is not None else None
    groups = _read_groups(paths, bucket_len, result, ids_from)
    cut = bucket_len
    bounds = {id(t): (t.bounds[0][:cut], t.bounds[1][:cut]) for t in targets}
    by_who: dict[tuple[str | None, str | None, tuple[str, ...], str], list[Target]] = {}
    rate_from = rate_since[:cut]
    for group, (cost, requests, tokens) in groups.items():
        who = (group[0], group[1], group[2], group[3])
        matching = by_who.get(who)
        if matching is None:
            matching = by_who[who] = [t for t in targets if _counts(t, group)]
        bucket = group[4]
        if cost:
            for target in matching:
                low, high = bounds[id(target)]
                if low <= bucket < high:
                    slot = (target.counter, target.window.start)
                    result.spend[slot] = result.spend.get(slot, 0) + cost
        if bucket >= rate_from and group[0] is not None:
            got = result.recent.get(group[0], (0, 0))
            result.recent[group[0]] = (got[0] + requests, got[1] + tokens)
    return result
