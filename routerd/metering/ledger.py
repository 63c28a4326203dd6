"""The spend ledger: one request's admission and settlement, per-key usage, replay and reload.

Owns how budgets (and, with them, a key's rate limits) are enforced on top of a `LedgerStore`
(which holds every number):

- `admit`: ONE atomic store call taking the request's rate hits and concurrency slots (its key's
  `RatePlan`) and holding its worst-case cost on every budget that applies, in each budget's
  current window; refused as a whole if anything has no room (a budget refusal takes no rate hit
  and no slot).
- `settle`: ONE atomic store call: the exact cost replaces the holds, the key's usage counters
  (daily, weekly, monthly, total) get it too, the slots are given back and the tpm buckets
  corrected by the difference between the admitted estimate and the usage. A request admitted
  under an older table whose budgets changed since is also added to the budgets of the current
  table that count it and were not held.
- What the calls send is derived once, not per request: a rule set's holds and a key's usage
  counters are cached for as long as `now` stays in all of their windows. The request path reads
  the time as epoch seconds (one float) and builds a `datetime` only when a window rolls over.
- `rebuild`: at startup, journal replay (in a thread) fills every live budget window, the key
  usage counters and the last minute of rate-limit buckets.
- `prepare_reload` / reload: a budget whose period or scope changed has a new counter id; it is
  rebuilt from the journal before the table swap, while settlements made during that scan are
  captured and added if the scan did not see them. A limit change needs nothing: limits are
  passed with every reservation.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from routerd.metering.budgets import BudgetRule
from routerd.metering.ratelimit import RateDecision, RatePlan
from routerd.metering.replay import (
    USAGE_PERIODS,
    ReplayResult,
    budget_targets,
    replay,
    usage_counter,
    usage_targets,
)
from routerd.metering.store import (
    CounterState,
    Hold,
    InMemoryStore,
    LedgerStore,
    Refusal,
    Spend,
    Target,
)
from routerd.metering.windows import Window, window_for

Clock = Callable[[], datetime]


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Reservation(NamedTuple):
    """What admission took for one request, so settlement gives back exactly that: budget holds
    (`id` is None when no budget applied), concurrency slots and the tpm estimate of `rate`.

    `epoch` is the ledger's rule set at admission: unchanged at settlement, the holds already
    cover every budget that counts the request."""

    id: str | None
    rules: tuple[BudgetRule, ...]
    amount: int
    epoch: int = -1
    rate: RatePlan | None = None
    tokens: int = 0


class Admitted(NamedTuple):
    """`Ledger.admit`'s outcome: the rate decision (None without rate limits) and either the
    reservation (admitted) or, when the budgets refused, the refusal (nothing was taken)."""

    rate: RateDecision | None
    held: Reservation | BudgetRefusal | None


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """The budget that had no room, as it stood, and when its window resets."""

    rule: BudgetRule
    spent: int
    reserved: int
    amount: int
    window: Window


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    rule: BudgetRule
    window: Window
    spent: int
    reserved: int

    @property
    def remaining(self) -> int:
        return max(self.rule.limit_pico - self.spent - self.reserved, 0)


class Settled(NamedTuple):
    """A finished request as the ledger needs it."""

    request_id: str
    key_id: str | None
    user: str | None
    tags: tuple[str, ...]
    model: str
    cost: int


@dataclass(slots=True)
class _Capture:
    since: datetime
    records: list[Settled] = field(default_factory=list)


class _Windows:
    """The current window of each period, recomputed only when `now` leaves it."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, int | None], Window] = {}

    def of(self, period: str, seconds: int | None, now: datetime) -> Window:
        window = self._current.get((period, seconds))
        if window is not None:
            if now.tzinfo is UTC:  # the ledger's clock: plain comparisons, no conversion
                start, end = window.start, window.end
                if (start is None or start <= now) and (end is None or now < end):
                    return window
            elif window.contains(now):
                return window
        window = self._current[(period, seconds)] = window_for(period, seconds, now)
        return window

    def rule(self, rule: BudgetRule, now: datetime) -> Window:
        return self.of(rule.config.period, rule.config.period_seconds, now)


class _Cached(NamedTuple):
    """Store arguments derived from `source`, valid while `since <= now < until` (epoch
    seconds; open bounds are infinite)."""

    source: object
    since: float
    until: float
    value: tuple[Hold, ...] | tuple[Target, ...]


def _span(
    source: object, windows: Sequence[Window], value: tuple[Hold, ...] | tuple[Target, ...]
) -> _Cached:
    starts = [w.start.timestamp() for w in windows if w.start is not None]
    ends = [w.end.timestamp() for w in windows if w.end is not None]
    return _Cached(source, max(starts, default=-math.inf), min(ends, default=math.inf), value)


_CACHE_SIZE = 100_000


def unique_rules(*groups: Iterable[BudgetRule]) -> tuple[BudgetRule, ...]:
    seen: dict[str, BudgetRule] = {}
    for group in groups:
        for rule in group:
            seen.setdefault(rule.counter, rule)
    return tuple(seen.values())


class Ledger:
    """Budget enforcement and usage counters over one store (see the module docstring)."""

    def __init__(self, store: LedgerStore, seconds: Callable[[], float] = time.time) -> None:
        """`seconds` is the time in epoch seconds (the request path reads it as such: no
        datetime per call); `clock` is the same time as a UTC datetime."""
        self.store = store
        self._seconds = seconds
        self.clock: Clock = lambda: _utc(seconds())
        self._ids = itertools.count(1)
        self._rules: dict[str, BudgetRule] = {}
        self._counters: frozenset[str] = frozenset()
        self._capture: _Capture | None = None
        self._windows = _Windows()
        self._epoch = 0
        self._holds: dict[int, _Cached] = {}
        self._usage: dict[str, _Cached] = {}
        self._merged: dict[tuple[int, ...], tuple[tuple[object, ...], tuple[BudgetRule, ...]]] = {}
        self._shield = not isinstance(store, InMemoryStore)  # it never suspends: nothing to cut

    def use_rules(self, rules: dict[str, BudgetRule]) -> None:
        """The budgets of the table now serving (called at the swap; cannot fail)."""
        self._rules = rules
        self._counters = frozenset(r.counter for r in rules.values())
        self._epoch += 1
        self._holds.clear()
        self._merged.clear()

    def rules_for(
        self, key_rules: tuple[BudgetRule, ...], model_rules: Sequence[tuple[BudgetRule, ...]]
    ) -> tuple[BudgetRule, ...]:
        """The unique rules of a key's and its candidate models' budgets, merged once per
        combination of those (table-owned) tuples."""
        if not any(model_rules):
            return key_rules
        groups = (key_rules, *model_rules)
        ids = tuple(map(id, groups))
        known = self._merged.get(ids)
        if known is not None and all(a is b for a, b in zip(known[0], groups, strict=True)):
            return known[1]
        if len(self._merged) >= _CACHE_SIZE:
            self._merged.clear()
        merged = unique_rules(*groups)
        self._merged[ids] = (groups, merged)
        return merged

    def _holds_of(self, rules: Sequence[BudgetRule], at: float) -> tuple[Hold, ...]:
        """The holds of `rules` in their windows at `at` (epoch seconds); a table-owned tuple's
        are cached."""
        cached = self._holds.get(id(rules))
        if cached is not None and cached.source is rules and cached.since <= at < cached.until:
            return cached.value  # type: ignore[return-value]
        now, of = _utc(at), self._windows.of
        windows = [of(r.config.period, r.config.period_seconds, now) for r in rules]
        holds = tuple(
            Hold(rule.counter, window.start, rule.limit_pico)
            for rule, window in zip(rules, windows, strict=True)
        )
        if type(rules) is tuple:  # immutable: the cache holds it, so its id stays its own
            if len(self._holds) >= _CACHE_SIZE:
                self._holds.clear()
            self._holds[id(rules)] = _span(rules, windows, holds)
        return holds

    def _usage_of(self, key_id: str, at: float) -> tuple[Target, ...]:
        """The key's usage counters (daily, weekly, monthly, total) in their windows at `at`."""
        cached = self._usage.get(key_id)
        if cached is not None and cached.since <= at < cached.until:
            return cached.value  # type: ignore[return-value]
        now = _utc(at)
        windows = [self._windows.of(period, None, now) for period in USAGE_PERIODS]
        targets = tuple(
            Target(usage_counter(key_id, period), window.start)
            for period, window in zip(USAGE_PERIODS, windows, strict=True)
        )
        if len(self._usage) >= _CACHE_SIZE:
            self._usage.clear()
        self._usage[key_id] = _span(key_id, windows, targets)
        return targets

    async def admit(
        self,
        rules: Sequence[BudgetRule],
        amount: int,
        rate: RatePlan | None = None,
        tokens: int = 0,
    ) -> Admitted:
        """Take `rate`'s hits (on an estimate of `tokens`) and slots and hold `amount` on every
        rule, all or nothing, in one store call (none if there is nothing to take)."""
        if tokens < 0:
            raise ValueError(f"estimated tokens must not be negative, got {tokens}")
        if rate is not None and rate.empty:
            rate = None
        if not rules and rate is None:
            return Admitted(None, Reservation(None, (), amount, self._epoch))
        at = self._seconds()
        holds = self._holds_of(rules, at) if rules else ()
        reservation_id = f"r{next(self._ids)}" if rules else None
        hits, slots = (rate.hits(tokens), rate.slots) if rate is not None else ((), ())
        result = await self.store.admit(
            reservation_id, amount, holds, hits, slots, at if rate else 0.0
        )
        decision = (
            rate.decide(result.buckets, result.concurrency_refused, admitted=result.allowed)
            if rate is not None
            else None
        )
        if result.allowed:
            held = Reservation(reservation_id, tuple(rules), amount, self._epoch, rate, tokens)
            return Admitted(decision, held)
        if result.refusal is None:  # the rate limits refused
            return Admitted(decision, None)
        return Admitted(decision, self._refused(rules, result.refusal, amount, at))

    def _refused(
        self, rules: Sequence[BudgetRule], refusal: Refusal, amount: int, at: float
    ) -> BudgetRefusal:
        rule = next(r for r in rules if r.counter == refusal.counter)
        window = self._windows.rule(rule, _utc(at))
        return BudgetRefusal(rule, refusal.spent, refusal.reserved, amount, window)

    async def settle(self, reservation: Reservation | None, done: Settled, tokens: int = 0) -> None:
        """Give back what admission took, in one store call: exact cost onto the held budgets,
        the key's usage and budgets the swap added; the slots; the tpm estimate corrected to
        the `tokens` the request used."""
        held_id = reservation.id if reservation is not None else None
        rate = reservation.rate if reservation is not None else None
        spends: tuple[Target, ...] = ()
        corrections = rate.corrections(tokens - reservation.tokens) if rate and reservation else ()
        at = self._seconds() if done.cost or corrections else 0.0
        if done.cost:
            if done.key_id is not None:
                spends = self._usage_of(done.key_id, at)
            if reservation is None or reservation.epoch != self._epoch:
                held = frozenset(r.counter for r in reservation.rules) if reservation else None
                spends = (*self._unheld(done, held or frozenset(), at), *spends)
        slots = rate.slot_names if rate is not None else ()
        if held_id is not None or spends or slots or corrections:
            at = at if corrections else 0.0
            call = self.store.finish(held_id, done.cost, spends, slots, corrections, at)
            await (asyncio.shield(call) if self._shield else call)
        if self._capture is not None:
            self._capture.records.append(done)

    def _unheld(self, done: Settled, held: frozenset[str], at: float) -> list[Target]:
        """Budgets of the current table that count `done` and were not held at its admission
        (it was admitted under an older rule set)."""
        if not (held - self._counters or self._counters - held):
            return []
        now = _utc(at)
        return [
            Target(rule.counter, self._windows.rule(rule, now).start)
            for rule in self._rules.values()
            if rule.counter not in held
            and rule.counts(done.key_id, done.user, done.tags, done.model)
        ]

    # -- reading -------------------------------------------------------------------------------

    async def status(self, rule: BudgetRule) -> BudgetStatus:
        window = self._windows.rule(rule, self.clock())
        state = await self.store.read(rule.counter, window.start)
        return BudgetStatus(rule, window, state.spent, state.reserved)

    async def key_usage(self, key_id: str) -> dict[str, int]:
        """The key's settled spend (pico-USD) in the current daily/weekly/monthly/total window."""
        now = self.clock()
        out = {}
        for period in USAGE_PERIODS:
            state: CounterState = await self.store.read(
                usage_counter(key_id, period), self._windows.of(period, None, now).start
            )
            out[period] = state.spent
        return out

    async def user_spend(self, user_id: str, budget_id: str | None) -> int:
        """Spend of the user's instance of `budget_id` in its current window (pico-USD)."""
        rule = self._rules.get(f"{budget_id}@user:{user_id}")
        return 0 if rule is None else (await self.status(rule)).spent

    # -- replay --------------------------------------------------------------------------------

    async def rebuild(
        self, journal_dir: Path, rules: Iterable[BudgetRule], key_ids: Iterable[str]
    ) -> ReplayResult:
        """Startup: fill budgets and key usage from the journal (before serving)."""
        now = self.clock()
        targets = budget_targets(rules, now) + usage_targets(key_ids, now)
        result = await asyncio.to_thread(replay, journal_dir, targets, now)
        await self.store.add_spends(
            [Spend(c, start, amount) for (c, start), amount in result.spend.items()]
        )
        return result

    def new_rules(self, rules: dict[str, BudgetRule]) -> list[BudgetRule]:
        """Budgets of a candidate table whose counters the ledger does not know yet."""
        return [r for r in rules.values() if r.counter not in self._counters]

    async def rebuild_for_reload(
        self,
        journal_dir: Path,
        rules: list[BudgetRule],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        """Rebuild the new counters of `rules` before a swap, losing no concurrent settlement.

        `flush` waits until the journal holds every record finished so far. Settlements that
        finish during the scan are captured and added unless the scan already counted them.
        """
        if not rules:
            return
        now = self.clock()
        capture = self._capture = _Capture(since=now)
        try:
            await flush()
            targets = budget_targets(rules, now)
            result = await asyncio.to_thread(replay, journal_dir, targets, now, capture.since)
            await self.store.add_spends(
                [Spend(c, start, amount) for (c, start), amount in result.spend.items()]
            )
            for done in capture.records:
                if done.request_id in result.request_ids or not done.cost:
                    continue
                for target in targets:
                    assert target.rule is not None
                    if target.rule.counts(done.key_id, done.user, done.tags, done.model):
                        await self.store.add_spend(target.counter, target.window.start, done.cost)
        finally:
            self._capture = None
