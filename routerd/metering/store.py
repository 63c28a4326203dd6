"""`InMemoryStore`, the default `LedgerStore`: all shared metering state in plain dicts of this
process. The protocol and the types it takes and returns are in `store_api.py` (re-exported
here, so `from routerd.metering.store import ...` keeps working).

Its methods never `await`, so each runs to completion on the event loop: that is its atomicity.
Keep it that way when changing them.

Per counter only the newest two windows (current and previous) are kept, plus any older window
that still holds a reservation.

Rate buckets use an integer GCRA (a continuously refilled bucket of `limit` units per window,
burst up to `limit`): the state is one integer "debt" in (milliseconds x limit) and the time it was
last updated. One unit of cost adds `window_ms` to the debt; every elapsed millisecond removes
`limit`; a hit fits while debt + cost x window_ms <= limit x window_ms. All arithmetic is integer,
so "exactly `limit` hits at once, then one more every window/limit" holds with no float drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from routerd.metering.store_api import (
    Admission,
    BucketState,
    ConcurrencySlot,
    CounterState,
    Hold,
    LedgerStore,
    RateHit,
    Refusal,
    Spend,
    Target,
)

__all__ = [
    "Admission",
    "BucketState",
    "ConcurrencySlot",
    "CounterState",
    "Hold",
    "InMemoryStore",
    "LedgerStore",
    "RateHit",
    "Refusal",
    "Spend",
    "Target",
]


@dataclass(slots=True)
class _Counter:
    spent: int = 0
    reserved: int = 0


@dataclass(slots=True)
class _Bucket:
    debt: int  # backlog in (milliseconds x limit); 0 = full bucket
    at_ms: int
    limit: int
    window_ms: int


_NO_WINDOWS: dict[datetime | None, _Counter] = {}


def _check_unique(hits: Sequence[RateHit], slots: Sequence[Any]) -> None:
    count = len(hits)
    if count == 2:  # the common case (one scope's rpm and tpm): no set
        if hits[0].bucket == hits[1].bucket:
            raise ValueError("a rate bucket appears twice in one admission")
    elif count > 2 and len({hit.bucket for hit in hits}) != count:
        raise ValueError("a rate bucket appears twice in one admission")
    if len(slots) > 1 and len({slot.name for slot in slots}) != len(slots):
        raise ValueError("a concurrency slot appears twice in one admission")


def _check_holds(holds: Sequence[Hold]) -> None:
    if len({(h.counter, h.window_start) for h in holds}) != len(holds):
        raise ValueError("a counter is held twice in one reservation")


def _window_order(window_start: datetime | None) -> float:
    return -math.inf if window_start is None else window_start.timestamp()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_amount(amount: int, what: str) -> None:
    if type(amount) is int and amount >= 0:  # the common case first: one type check
        return
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"{what} must be an int, got {type(amount).__name__}")
    if amount < 0:
        raise ValueError(f"{what} must not be negative, got {amount}")


def _check_hit(hit: RateHit) -> None:
    if hit.limit <= 0 or hit.window_seconds <= 0:
        raise ValueError(f"rate bucket {hit.bucket!r} needs a positive limit and window")


def _bucket_state(bucket: _Bucket, name: str, cost: int, allowed: bool) -> BucketState:
    """Derived view of `bucket` after (allowed) or instead of (refused) a hit of `cost`."""
    limit, window_ms, debt = bucket.limit, bucket.window_ms, bucket.debt
    capacity = limit * window_ms
    remaining = (capacity - debt) // window_ms if debt < capacity else 0
    reset = -(-debt // limit) / 1000
    if allowed:
        return BucketState(name, limit, True, remaining, reset, 0.0)
    excess = debt + cost * window_ms - capacity
    retry = None if cost > limit else _ceil_div(max(excess, 0), limit) / 1000
    return BucketState(name, limit, False, remaining, reset, retry)


class InMemoryStore:
    """The default `LedgerStore`: plain dicts in this process, atomic because it never awaits."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[datetime | None, _Counter]] = {}
        self._reservations: dict[str, tuple[int, tuple[Hold, ...]]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self._checked: object = None  # the last holds found unique (callers reuse the tuple)

    # -- one request: admission and settlement -------------------------------------------------

    async def admit(
        self,
        reservation_id: str | None,
        amount: int,
        holds: Sequence[Hold],
        hits: Sequence[RateHit],
        slots: Sequence[ConcurrencySlot],
        now: float,
    ) -> Admission:
        if holds:
            if reservation_id is None:
                raise ValueError("budget holds need a reservation id")
            if reservation_id in self._reservations:
                raise ValueError(f"reservation {reservation_id!r} is already held")
            _check_amount(amount, "hold amount")
        if len(holds) > 1 and holds is not self._checked:
            _check_holds(holds)
            self._checked = holds if type(holds) is tuple else None
        if len(hits) > 1 or len(slots) > 1:
            _check_unique(hits, slots)
        now_ms = math.floor(now * 1000)
        buckets: list[_Bucket] = []
        allowed = True
        for hit in hits:  # plain loops: one or two hits, no comprehension frames
            bucket = self._bucket(hit, now_ms)
            buckets.append(bucket)
            if bucket.debt + hit.cost * bucket.window_ms > bucket.limit * bucket.window_ms:
                allowed = False
        in_flight = self._in_flight
        full = None
        for slot in slots:
            if in_flight.get(slot.name, 0) >= slot.limit:
                full = slot.name
                allowed = False
                break
        found = self._over(holds, amount) if allowed and holds else None
        if isinstance(found, Refusal):
            return self._refused(hits, buckets, full, found)
        if not allowed:
            return self._refused(hits, buckets, full, None)
        states = []
        for hit, bucket in zip(hits, buckets, strict=True):
            bucket.debt += hit.cost * bucket.window_ms
            states.append(_bucket_state(bucket, hit.bucket, hit.cost, True))
        for slot in slots:
            in_flight[slot.name] = in_flight.get(slot.name, 0) + 1
        if found is not None:
            self._hold(reservation_id or "", amount, tuple(holds), found)
        return Admission(True, tuple(states), None, None)

    @staticmethod
    def _refused(
        hits: Sequence[RateHit], buckets: list[_Bucket], full: str | None, refusal: Refusal | None
    ) -> Admission:
        """The refusal of an admission (nothing was taken): each bucket as it stands."""
        states = tuple(
            _bucket_state(
                bucket,
                hit.bucket,
                hit.cost,
                bucket.debt + hit.cost * bucket.window_ms <= bucket.limit * bucket.window_ms,
            )
            for hit, bucket in zip(hits, buckets, strict=True)
        )
        return Admission(False, states, full, refusal)

    async def finish(
        self,
        reservation_id: str | None,
        actual: int,
        spends: Sequence[Target],
        slots: Sequence[str],
        corrections: Sequence[RateHit],
        now: float,
    ) -> bool:
        if type(actual) is not int or actual < 0:
            _check_amount(actual, "actual cost")
        held = self._reservations.pop(reservation_id, None) if reservation_id else None
        counters, add = self._counters, self._add
        if held is not None:
            amount, holds = held
            for hold in holds:
                windows = counters.get(hold.counter, _NO_WINDOWS)
                state = windows.get(hold.window_start)
                if state is None:  # a hold of 0 in a stale window may have been collected
                    add(hold.counter, hold.window_start, actual, -amount)
                    continue
                state.reserved -= amount
                state.spent += actual
                if len(windows) > 2:
                    self._collect(windows)
        for target in spends:
            state = counters.get(target.counter, _NO_WINDOWS).get(target.window_start)
            if state is None:
                add(target.counter, target.window_start, actual, 0)
            else:  # an existing window: nothing new to collect
                state.spent += actual
        self._release(slots)
        if corrections:
            now_ms = math.floor(now * 1000)
            for hit in corrections:
                bucket = self._bucket(hit, now_ms, signed=True)
                bucket.debt = max(bucket.debt + hit.cost * bucket.window_ms, 0)
        return held is not None

    # -- spend counters ------------------------------------------------------------------------

    def _over(self, holds: Sequence[Hold], amount: int) -> Refusal | list[_Counter | None]:
        """The first hold of `amount` that does not fit its limit, as the counter stands; or,
        when all fit, each hold's window as it stands (None: not created yet)."""
        counters = self._counters
        found: list[_Counter | None] = []
        for hold in holds:
            state = counters.get(hold.counter, _NO_WINDOWS).get(hold.window_start)
            found.append(state)
            limit = hold.limit
            if limit is None:
                continue
            spent, reserved = (0, 0) if state is None else (state.spent, state.reserved)
            if spent + reserved + amount > limit:
                return Refusal(hold.counter, hold.window_start, amount, spent, reserved, limit)
        return found

    def _hold(
        self,
        reservation_id: str,
        amount: int,
        holds: tuple[Hold, ...],
        found: list[_Counter | None],
    ) -> None:
        """Hold `amount` on each window `_over` found (holding never makes a window
        collectable, so only a new one needs `_add` and its collection)."""
        for hold, state in zip(holds, found, strict=True):
            if state is None:
                self._add(hold.counter, hold.window_start, 0, amount)
            else:
                state.reserved += amount
        self._reservations[reservation_id] = (amount, holds)

    async def add_spend(self, counter: str, window_start: datetime | None, amount: int) -> None:
        await self.add_spends((Spend(counter, window_start, amount),))

    async def add_spends(self, spends: Sequence[Spend]) -> None:
        for spend in spends:
            _check_amount(spend.amount, "spend amount")
        for spend in spends:
            self._add(spend.counter, spend.window_start, spend.amount, 0)

    async def read(self, counter: str, window_start: datetime | None) -> CounterState:
        state = self._counters.get(counter, _NO_WINDOWS).get(window_start)
        return CounterState() if state is None else CounterState(state.spent, state.reserved)

    def _add(self, counter: str, window_start: datetime | None, spent: int, reserved: int) -> None:
        """Add to the counter window (created at zero), then collect its old windows."""
        windows = self._counters.get(counter)
        if windows is None:
            windows = self._counters[counter] = {}
        state = windows.get(window_start)
        if state is None:
            state = windows[window_start] = _Counter()
        state.spent += spent
        state.reserved += reserved
        if len(windows) > 2:
            self._collect(windows)

    @staticmethod
    def _collect(windows: dict[datetime | None, _Counter]) -> None:
        """Keep the newest two windows, and older ones only while they hold a reservation."""
        for start in sorted(windows, key=_window_order)[:-2]:
            if windows[start].reserved == 0:
                del windows[start]

    # -- rate buckets and concurrency ----------------------------------------------------------

    async def rate_adjust(self, hits: Sequence[RateHit], now: float) -> tuple[BucketState, ...]:
        now_ms = math.floor(now * 1000)
        states = []
        for hit in hits:
            bucket = self._bucket(hit, now_ms, signed=True)
            bucket.debt = max(bucket.debt + hit.cost * bucket.window_ms, 0)
            fits = bucket.debt <= bucket.limit * bucket.window_ms
            states.append(_bucket_state(bucket, hit.bucket, 0, fits))
        return tuple(states)

    def _bucket(self, hit: RateHit, now_ms: int, signed: bool = False) -> _Bucket:
        """The bucket of `hit`, decayed to `now_ms` and rescaled if its limit or window changed.
        Checks the hit first (a negative cost only when `signed`)."""
        cost = hit.cost
        if type(cost) is not int or (cost < 0 and not signed):
            _check_amount(cost, "rate cost")
        if hit.limit <= 0 or hit.window_seconds <= 0:
            _check_hit(hit)
        window_ms = hit.window_seconds * 1000
        bucket = self._buckets.get(hit.bucket)
        if bucket is None:
            bucket = self._buckets[hit.bucket] = _Bucket(0, now_ms, hit.limit, window_ms)
            return bucket
        if now_ms > bucket.at_ms:
            debt = bucket.debt - (now_ms - bucket.at_ms) * bucket.limit
            bucket.debt = debt if debt > 0 else 0
            bucket.at_ms = now_ms
        if bucket.limit != hit.limit or bucket.window_ms != window_ms:
            # Keep the units already used (debt / window_ms) across a reload that changes them.
            bucket.debt = _ceil_div(bucket.debt * window_ms, bucket.window_ms)
            bucket.limit, bucket.window_ms = hit.limit, window_ms
        return bucket

    def _release(self, names: Sequence[str]) -> None:
        in_flight = self._in_flight
        for name in names:
            count = in_flight.get(name, 0) - 1
            if count > 0:
                in_flight[name] = count
            else:
                in_flight.pop(name, None)

    # -- admin ---------------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        counters = [
            {
                "counter": counter,
                "window_start": None if start is None else start.isoformat(),
                "spent": state.spent,
                "reserved": state.reserved,
            }
            for counter, windows in self._counters.items()
            for start, state in sorted(windows.items(), key=lambda item: _window_order(item[0]))
        ]
        buckets = [
            {
                "bucket": name,
                "limit": b.limit,
                "window_seconds": b.window_ms / 1000,
                "used_units": b.debt / b.window_ms,
                "updated_at": b.at_ms / 1000,
            }
            for name, b in self._buckets.items()
        ]
        return {
            "counters": counters,
            "reservations": len(self._reservations),
            "rate_buckets": buckets,
            "concurrency": dict(self._in_flight),
        }
