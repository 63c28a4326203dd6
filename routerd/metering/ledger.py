"""The spend ledger: budget reservations and settlement, per-key usage, replay and reload.

Owns how budgets are enforced on top of a `LedgerStore` (which holds every number):

- `reserve`: one atomic store call holding the request's worst-case cost on every budget that
  applies, in each budget's current window; refused as a whole if any has no room.
- `settle`: the exact cost replaces the holds; per-key usage counters (daily, weekly, monthly,
  total) get the cost too. A request admitted under an older table whose budgets changed since
  is also added to the budgets of the current table that count it and were not held.
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from routerd.metering.budgets import BudgetRule
from routerd.metering.replay import (
    USAGE_PERIODS,
    ReplayResult,
    budget_targets,
    replay,
    usage_counter,
    usage_targets,
)
from routerd.metering.store import Charge, CounterState, LedgerStore, Spend
from routerd.metering.windows import Window, window_for

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reservation(NamedTuple):
    """Holds taken for one request; `id` is None when no budget applied (nothing to settle).

    `epoch` is the ledger's rule set at admission: unchanged at settlement, the holds already
    cover every budget that counts the request."""

    id: str | None
    rules: tuple[BudgetRule, ...]
    amount: int
    epoch: int = -1


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


def unique_rules(*groups: Iterable[BudgetRule]) -> tuple[BudgetRule, ...]:
    seen: dict[str, BudgetRule] = {}
    for group in groups:
        for rule in group:
            seen.setdefault(rule.counter, rule)
    return tuple(seen.values())


class Ledger:
    """Budget enforcement and usage counters over one store (see the module docstring)."""

    def __init__(self, store: LedgerStore, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock
        self._ids = itertools.count(1)
        self._rules: dict[str, BudgetRule] = {}
        self._counters: frozenset[str] = frozenset()
        self._capture: _Capture | None = None
        self._windows = _Windows()
        self._epoch = 0
        self._usage_names: dict[str, tuple[str, ...]] = {}

    def use_rules(self, rules: dict[str, BudgetRule]) -> None:
        """The budgets of the table now serving (called at the swap; cannot fail)."""
        self._rules = rules
        self._counters = frozenset(r.counter for r in rules.values())
        self._epoch += 1

    def _usage_counters(self, key_id: str) -> tuple[str, ...]:
        names = self._usage_names.get(key_id)
        if names is None:
            if len(self._usage_names) >= 100_000:
                self._usage_names.clear()
            names = tuple(usage_counter(key_id, period) for period in USAGE_PERIODS)
            self._usage_names[key_id] = names
        return names

    async def reserve(
        self, rules: Sequence[BudgetRule], amount: int
    ) -> Reservation | BudgetRefusal:
        if not rules:
            return Reservation(None, (), amount, self._epoch)
        now = self.clock()
        of = self._windows.of
        windows = [of(r.config.period, r.config.period_seconds, now) for r in rules]
        charges = [
            Charge(rule.counter, window.start, amount, rule.limit_pico)
            for rule, window in zip(rules, windows, strict=True)
        ]
        reservation_id = f"r{next(self._ids)}"
        result = await self.store.reserve(reservation_id, charges)
        if result.ok:
            return Reservation(reservation_id, tuple(rules), amount, self._epoch)
        refusal = result.refusal
        assert refusal is not None
        index = next(i for i, c in enumerate(charges) if c.counter == refusal.counter)
        return BudgetRefusal(rules[index], refusal.spent, refusal.reserved, amount, windows[index])

    async def settle(self, reservation: Reservation | None, done: Settled) -> None:
        """Exact cost onto the held budgets, the key's usage, and budgets the swap added:
        one store call."""
        held_id = reservation.id if reservation is not None else None
        spends: list[Spend] = []
        if done.cost:
            now = self.clock()
            if reservation is None or reservation.epoch != self._epoch:
                held = frozenset(r.counter for r in reservation.rules) if reservation else None
                spends += self._unheld(done, held or frozenset(), now)
            if done.key_id is not None:
                windows = self._windows
                for period, name in zip(
                    USAGE_PERIODS, self._usage_counters(done.key_id), strict=True
                ):
                    spends.append(Spend(name, windows.of(period, None, now).start, done.cost))
        if held_id is not None or spends:
            await self.store.settle(held_id, done.cost, spends)
        if self._capture is not None:
            self._capture.records.append(done)

    def _unheld(self, done: Settled, held: frozenset[str], now: datetime) -> list[Spend]:
        """Budgets of the current table that count `done` and were not held at its admission
        (it was admitted under an older rule set)."""
        if not (held - self._counters or self._counters - held):
            return []
        return [
            Spend(rule.counter, self._windows.rule(rule, now).start, done.cost)
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
        for (counter, start), amount in result.spend.items():
            await self.store.add_spend(counter, start, amount)
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
            for (counter, start), amount in result.spend.items():
                await self.store.add_spend(counter, start, amount)
            for done in capture.records:
                if done.request_id in result.request_ids or not done.cost:
                    continue
                for target in targets:
                    assert target.rule is not None
                    if target.rule.counts(done.key_id, done.user, done.tags, done.model):
                        await self.store.add_spend(target.counter, target.window.start, done.cost)
        finally:
            self._capture = None
