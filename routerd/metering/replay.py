"""Journal replay: rebuild spend counters from the usage journal (startup and budget changes).

Owns reading the journal files that overlap the live windows and summing their records into
(counter, window start) -> pico-USD totals, plus per-key usage and the last minute's requests and
tokens per key (to refill rate-limit buckets). It does no ledger I/O: the ledger applies the
result. Blocking file reads; callers run it in a thread. One file's per-line parse is
`replay_parse.py` (small, so worker processes start fast).

Speed: records are first grouped by (key, user, tags, model, time bucket), so the budget rules
are evaluated once per group, not once per line. The bucket is the UTC day (`ts[:10]`) when every
window boundary falls on midnight (daily, weekly, monthly, total and whole-day `<N>s` periods),
the minute when they fall on a minute, else the whole timestamp. Timestamps are compared as strings:
`format_ts` writes fixed-width UTC (`2026-11-24T10:00:00.123Z`), so string order is time order.
Applying the groups tries, per key/user/tags/model, only its key's own targets (usage counters,
key-scoped budgets no key lists) and the targets that are not per key, in `targets` order.

Cold start: closed days without a valid summary are parsed in worker processes (`replay_pool.py`,
`spawn` start method) when there are at least two of them and enough bytes to pay for starting
the workers; the open days (today, the rate window, `ids_since`) are parsed here meanwhile. The
results are merged in day order, so the outcome equals the in-process parse. If the pool fails
(e.g. a sandbox that forbids processes) one warning is logged and those days are parsed here:
a pool never fails a startup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

from routerd.metering.budgets import BudgetRule
from routerd.metering.journal import journal_days
from routerd.metering.replay_parse import Parsed, parse_closed_day, parse_file
from routerd.metering.replay_parse import ReplayResult as ReplayResult  # re-exported
from routerd.metering.replay_pool import PoolPolicy
from routerd.metering.replay_pool import start as start_pool
from routerd.metering.summaries import Group as _Group
from routerd.metering.summaries import Summary, load_summary, write_summary
from routerd.metering.usage import format_ts
from routerd.metering.windows import Window, window_for

USAGE_PERIODS = ("daily", "weekly", "monthly", "total")
RATE_WINDOW = timedelta(seconds=60)
DEFAULT_POOL = PoolPolicy()  # >= 2 closed days to parse and >= 64 MB of them


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


def _since(targets: Iterable[Target]) -> date | None:
    """The first journal day any target needs; `None` (every file) if one never resets."""
    starts = [t.window.start for t in targets]
    if not starts or any(s is None for s in starts):
        return None
    return min(s.date() for s in starts if s is not None)


def _bucket_len(targets: Iterable[Target]) -> int:
    """How much of `ts` to group by: the day, the minute or all of it, by the window edges."""
    edges = [e for t in targets for e in (t.window.start, t.window.end) if e is not None]
    if all(not (e.hour or e.minute or e.second or e.microsecond) for e in edges):
        return 10
    if all(not (e.second or e.microsecond) for e in edges):
        return 16
    return 24


def _counts(target: Target, group: _Group) -> bool:
    key_id, user, tags, model, _ = group
    if target.rule is None:
        return key_id == target.key_id
    return target.rule.counts(key_id, user, tags, model)


def _whole_day(day: date, targets: Iterable[Target]) -> bool:
    """Whether no target window starts or ends inside `day` (so a per-day sum is exact)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    for t in targets:
        for edge in (t.window.start, t.window.end):
            if edge is not None and start < edge < end:
                return False
    return True


def _closed_days(
    days: list[tuple[date, Path]], targets: list[Target], plan: _Plan
) -> tuple[dict[Path, Summary], list[Path]]:
    """The closed days' current summaries, and the closed days that have none (to parse)."""
    cached: dict[Path, Summary] = {}
    fresh: list[Path] = []
    for day, path in days:
        if day < plan.raw_from and _whole_day(day, targets):
            summary = load_summary(path)
            if summary is None:
                fresh.append(path)
            else:
                cached[path] = summary
    return cached, fresh


def _summed(found: Summary | Parsed, result: ReplayResult) -> dict[_Group, list[int]]:
    groups, lines, skipped, last_seen = (
        (found.groups, found.lines, found.skipped, found.last_seen)
        if isinstance(found, Summary) else found
    )  # fmt: skip
    result.lines += lines
    result.skipped += skipped
    _merge_last_seen(result.last_seen, last_seen)
    return groups


def _merge_last_seen(into: dict[str, str], more: dict[str, str]) -> None:
    for key_id, ts in more.items():
        if ts > into.get(key_id, ""):
            into[key_id] = ts


@dataclass(frozen=True, slots=True)
class _Plan:
    bucket_len: int
    rate_since: str
    ids_since: str | None
    raw_from: date  # files of this day and later are always parsed (they may still grow)


def replay(
    directory: Path,
    targets: list[Target],
    now: datetime,
    ids_since: datetime | None = None,
    pool: PoolPolicy = DEFAULT_POOL,
) -> ReplayResult:
    """Sum the journal into `targets` (only files overlapping their windows are read).

    `recent` gets each key's requests and tokens of the last minute before `now`;
    `request_ids` the ids of records at or after `ids_since` (to de-duplicate records that
    were settled while the replay ran). Closed days are read from their summaries
    (`summaries.py`) when those match the file, and summarized when they do not (in worker
    processes when `pool` says that pays).
    """
    result = ReplayResult()
    if not targets:
        return result
    since = _since(targets)
    rate_start = now - RATE_WINDOW
    if since is not None:
        since = min(since, rate_start.date())
    raw_from = min(rate_start.date(), ids_since.date() if ids_since else now.date())
    plan = _Plan(
        _bucket_len(targets), format_ts(rate_start),
        format_ts(ids_since) if ids_since is not None else None, raw_from,
    )  # fmt: skip
    days = journal_days(directory, since)
    cached, fresh = _closed_days(days, targets, plan)
    parse = partial(parse_closed_day, rate_since=plan.rate_since)
    closed = cached.keys() | set(fresh)
    batch = start_pool(parse, fresh, pool)
    try:
        opened = {
            path: parse_file(path, plan.bucket_len, result, plan.ids_since, plan.rate_since)
            for _day, path in days
            if path not in closed
        }
        parsed = batch.results()
    finally:
        batch.close()
    groups: dict[_Group, list[int]] = {}
    for _day, path in days:
        found = _day_groups(path, cached, parsed, opened, parse, result)
        if found is None:
            continue
        result.files += 1
        for group, (cost, requests, tokens) in found.items():
            acc = groups.get(group)
            if acc is None:
                groups[group] = [cost, requests, tokens]
            else:
                acc[0] += cost
                acc[1] += requests
                acc[2] += tokens
    _apply(groups, targets, result)
    return result


def _day_groups(
    path: Path,
    cached: dict[Path, Summary],
    parsed: dict[Path, Parsed | None],
    opened: dict[Path, dict[_Group, list[int]] | None],
    parse: Callable[[Path], Parsed | None],
    result: ReplayResult,
) -> dict[_Group, list[int]] | None:
    """One file's groups: its summary, its open-day parse, or its closed-day parse (summarized)."""
    if path in cached:
        return _summed(cached[path], result)
    if path in opened:
        return opened[path]
    found = parsed[path] if path in parsed else parse(path)
    if found is None:
        return None
    write_summary(path, Summary(*found))
    return _summed(found, result)


def _only_key(target: Target) -> tuple[bool, str | None]:
    """(True, K) when the target can only count records of key id K (usage, unlisted key scope)."""
    if target.rule is None:
        return True, target.key_id
    scope = target.rule.config.scope
    if scope.kind == "key" and not target.rule.listed_by:
        return True, scope.value
    return False, None


def _by_key(targets: list[Target]) -> tuple[dict[str | None, list[int]], list[int]]:
    """Target positions by the one key id each can count, and the positions of the others."""
    by_key: dict[str | None, list[int]] = {}
    others: list[int] = []
    for i, target in enumerate(targets):
        only, key_id = _only_key(target)
        if only:
            by_key.setdefault(key_id, []).append(i)
        else:
            others.append(i)
    return by_key, others


def _apply(groups: dict[_Group, list[int]], targets: list[Target], result: ReplayResult) -> None:
    bounds = {id(t): t.bounds for t in targets}
    by_key, others = _by_key(targets)  # only a key's own targets and the others can match
    by_who: dict[tuple[str | None, str | None, tuple[str, ...], str], list[Target]] = {}
    for group, (cost, _requests, _tokens) in groups.items():
        if not cost:
            continue
        who = (group[0], group[1], group[2], group[3])
        matching = by_who.get(who)
        if matching is None:
            places = sorted(by_key.get(group[0], []) + others)  # in `targets` order
            matching = by_who[who] = [targets[i] for i in places if _counts(targets[i], group)]
        bucket = group[4]
        for target in matching:
            low, high = bounds[id(target)]
            if low <= bucket < high:
                slot = (target.counter, target.window.start)
                result.spend[slot] = result.spend.get(slot, 0) + cost
