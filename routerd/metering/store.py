"""The ledger store: the one seam behind which all shared metering state lives.

Owns spend counters (with reservations), rate-limit buckets and concurrency counters, behind the
async `LedgerStore` protocol, and `InMemoryStore`, the default implementation. A Redis/Valkey store
will implement the same protocol so several routerd instances share budgets and limits; therefore:

- Every protocol method is ONE atomic operation (a Lua script in Redis). Check-and-hold never
  spans two calls, and nothing here assumes the caller runs in the same process.
- Nothing outside a store touches its state; callers only see the immutable result types below
  (named tuples: several are built per request, and a tuple costs a fraction of a frozen
  dataclass).
- `InMemoryStore` methods never `await`, so each runs to completion on the event loop: that is its
  atomicity. Keep it that way when changing them.

Counters are unit-agnostic integers (pico-USD for spend, tokens for token budgets), keyed by
(counter id, window start), so a new window starts at zero; `None` is the window of a `total`
period. Per counter only the newest two windows (current and previous) are kept, plus any older
window that still holds a reservation.

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
from typing import Any, NamedTuple, Protocol


class Charge(NamedTuple):
    """Hold `amount` on `counter` in the window starting at `window_start`, if it fits `limit`.

    `limit=None` records the hold without any check (a counter that is only tracked).
    """

    counter: str
    window_start: datetime | None
    amount: int
    limit: int | None


class Spend(NamedTuple):
    """Add `amount` of settled spend to `counter` in the window starting at `window_start`."""

    counter: str
    window_start: datetime | None
    amount: int


class CounterState(NamedTuple):
    """What one counter window holds: settled spend and outstanding reservations."""

    spent: int = 0
    reserved: int = 0

    @property
    def used(self) -> int:
        return self.spent + self.reserved


class CounterReading(NamedTuple):
    """One counter window of a reservation, as it stands after the operation."""

    counter: str
    window_start: datetime | None
    spent: int
    reserved: int
    limit: int | None


class Refusal(NamedTuple):
    """The first charge of a reservation that did not fit, with the counter as it stood."""

    counter: str
    window_start: datetime | None
    amount: int
    spent: int
    reserved: int
    limit: int


class ReserveResult(NamedTuple):
    """`ok` and the counters after the hold, or not `ok` (nothing held) and the refusal."""

    ok: bool
    readings: tuple[CounterReading, ...] = ()
    refusal: Refusal | None = None


class RateHit(NamedTuple):
    """Take `cost` units from the bucket `bucket` that refills `limit` units per window.

    In `rate_adjust` the cost may be negative (units given back, e.g. a token estimate corrected).
    """

    bucket: str
    cost: int
    limit: int
    window_seconds: int


class ConcurrencySlot(NamedTuple):
    """Take one of `limit` concurrent slots named `name`."""

    name: str
    limit: int


class BucketState(NamedTuple):
    """One rate bucket after (or, when refused, instead of) a hit.

    `allowed`: this bucket had room for the hit (another may still refuse the admission, and then
    nothing was taken). `remaining`: whole units that would fit now. `reset_after`: seconds until
    the bucket is full again. `retry_after`: 0 if the hit fitted; else seconds until it would, or
    `None` if it never can (its cost is larger than the limit).
    """

    bucket: str
    limit: int
    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float | None


class AdmitResult(NamedTuple):
    """All-or-nothing outcome of `rate_admit`: buckets in the order given, concurrency verdict."""

    allowed: bool
    buckets: tuple[BucketState, ...]
    concurrency_refused: str | None = None
    in_flight: tuple[int, ...] = ()


class LedgerStore(Protocol):
    """Shared metering state. Every method is one atomic operation (see the module docstring)."""

    async def reserve(self, reservation_id: str, charges: Sequence[Charge]) -> ReserveResult:
        """Hold every charge if, for each, spent + reserved + amount <= limit; else hold nothing.

        Reservation ids are unique: reusing one that is still held raises `ValueError`.
        """
        ...

    async def settle(
        self, reservation_id: str | None, actual: int, spends: Sequence[Spend] = ()
    ) -> tuple[CounterReading, ...]:
        """Replace the reservation's holds with `actual` spend in the windows they were made in,
        and add `spends` (settled, no limit check) in the same atomic step.

        Always succeeds (over or under the hold, after a rollover). Unknown, already settled or
        `None` ids return `()` (the spends are still added). All charges of one reservation must
        therefore share one unit.
        """
        ...

    async def release(self, reservation_id: str) -> bool:
        """Drop the reservation's holds (no cost). `False` if the id is unknown."""
        ...

    async def add_spend(self, counter: str, window_start: datetime | None, amount: int) -> None:
        """Add settled spend with no limit check (journal replay at startup)."""
        ...

    async def add_spends(self, spends: Sequence[Spend]) -> None:
        """`add_spend` of each, as one atomic operation."""
        ...

    async def read(self, counter: str, window_start: datetime | None) -> CounterState:
        """The counter window's state; zero if it was never touched or was collected."""
        ...

    async def rate_admit(
        self, hits: Sequence[RateHit], now: float, slots: Sequence[ConcurrencySlot] = ()
    ) -> AdmitResult:
        """Take every hit and one of every slot if all fit at `now` (epoch seconds); else none."""
        ...

    async def rate_adjust(self, hits: Sequence[RateHit], now: float) -> tuple[BucketState, ...]:
        """Add each (possibly negative) cost to its bucket with no limit check."""
        ...

    async def concurrency_release(self, names: Sequence[str]) -> None:
        """Give back one slot of each name (never below zero)."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole state, for admin endpoints and metrics."""
        ...


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


def _raise_duplicate(charges: Sequence[Charge]) -> None:
    seen: set[tuple[str, datetime | None]] = set()
    for charge in charges:
        key = (charge.counter, charge.window_start)
        if key in seen:
            raise ValueError(f"counter {charge.counter!r} charged twice in one reservation")
        seen.add(key)


def _refused(charge: Charge, spent: int, reserved: int) -> ReserveResult:
    limit = charge.limit
    assert limit is not None
    refusal = Refusal(charge.counter, charge.window_start, charge.amount, spent, reserved, limit)
    return ReserveResult(ok=False, refusal=refusal)


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
    capacity = bucket.limit * bucket.window_ms
    remaining = max(capacity - bucket.debt, 0) // bucket.window_ms
    reset_ms = _ceil_div(bucket.debt, bucket.limit)
    retry: float | None = 0.0
    if not allowed:
        excess = bucket.debt + cost * bucket.window_ms - capacity
        retry = None if cost > bucket.limit else _ceil_div(max(excess, 0), bucket.limit) / 1000
    return BucketState(name, bucket.limit, allowed, remaining, reset_ms / 1000, retry)


class InMemoryStore:
    """The default `LedgerStore`: plain dicts in this process, atomic because it never awaits."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[datetime | None, _Counter]] = {}
        self._reservations: dict[str, tuple[Charge, ...]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}

    # -- spend counters ------------------------------------------------------------------------

    async def reserve(self, reservation_id: str, charges: Sequence[Charge]) -> ReserveResult:
        if reservation_id in self._reservations:
            raise ValueError(f"reservation {reservation_id!r} is already held")
        for charge in charges:
            _check_amount(charge.amount, "charge amount")
        if len(charges) > 1 and len({(c.counter, c.window_start) for c in charges}) != len(charges):
            _raise_duplicate(charges)
        counters = self._counters
        for charge in charges:
            state = counters.get(charge.counter, _NO_WINDOWS).get(charge.window_start)
            limit = charge.limit
            if limit is None:
                continue
            if state is None:
                if charge.amount > limit:
                    return _refused(charge, 0, 0)
            elif state.spent + state.reserved + charge.amount > limit:
                return _refused(charge, state.spent, state.reserved)
        holds = tuple(charges)  # immutable: kept as the holds
        readings = []
        for hold in holds:
            counter = self._counter(hold.counter, hold.window_start)
            counter.reserved += hold.amount
            readings.append(
                CounterReading(
                    hold.counter, hold.window_start, counter.spent, counter.reserved, hold.limit
                )
            )
        self._reservations[reservation_id] = holds
        for hold in holds:
            self._collect(hold.counter)
        return ReserveResult(True, tuple(readings))

    async def settle(
        self, reservation_id: str | None, actual: int, spends: Sequence[Spend] = ()
    ) -> tuple[CounterReading, ...]:
        _check_amount(actual, "actual cost")
        for spend in spends:
            _check_amount(spend.amount, "spend amount")
        holds = self._reservations.pop(reservation_id, None) if reservation_id else None
        readings = []
        for hold in holds or ():
            counter = self._counter(hold.counter, hold.window_start)
            counter.reserved -= hold.amount
            counter.spent += actual
            readings.append(
                CounterReading(
                    hold.counter, hold.window_start, counter.spent, counter.reserved, hold.limit
                )
            )
        for spend in spends:
            self._counter(spend.counter, spend.window_start).spent += spend.amount
            self._collect(spend.counter)
        for hold in holds or ():
            self._collect(hold.counter)
        return tuple(readings)

    async def release(self, reservation_id: str) -> bool:
        holds = self._reservations.pop(reservation_id, None)
        if holds is None:
            return False
        for hold in holds:
            self._counter(hold.counter, hold.window_start).reserved -= hold.amount
            self._collect(hold.counter)
        return True

    async def add_spend(self, counter: str, window_start: datetime | None, amount: int) -> None:
        _check_amount(amount, "spend amount")
        self._counter(counter, window_start).spent += amount
        self._collect(counter)

    async def add_spends(self, spends: Sequence[Spend]) -> None:
        for spend in spends:
            _check_amount(spend.amount, "spend amount")
        for spend in spends:
            self._counter(spend.counter, spend.window_start).spent += spend.amount
            self._collect(spend.counter)

    async def read(self, counter: str, window_start: datetime | None) -> CounterState:
        return self._peek(counter, window_start)

    def _peek(self, counter: str, window_start: datetime | None) -> CounterState:
        state = self._counters.get(counter, {}).get(window_start)
        return CounterState() if state is None else CounterState(state.spent, state.reserved)

    def _counter(self, counter: str, window_start: datetime | None) -> _Counter:
        """The mutable window, created at zero; callers run `_collect` after changing it."""
        windows = self._counters.setdefault(counter, {})
        state = windows.get(window_start)
        if state is None:
            state = windows[window_start] = _Counter()
        return state

    def _collect(self, counter: str) -> None:
        """Keep the newest two windows of `counter`, and older ones only while they hold."""
        windows = self._counters[counter]
        if len(windows) <= 2:
            return
        for start in sorted(windows, key=_window_order)[:-2]:
            if windows[start].reserved == 0:
                del windows[start]

    # -- rate buckets and concurrency ----------------------------------------------------------

    async def rate_admit(
        self, hits: Sequence[RateHit], now: float, slots: Sequence[ConcurrencySlot] = ()
    ) -> AdmitResult:
        if len(hits) > 1 and len({hit.bucket for hit in hits}) != len(hits):
            raise ValueError("a rate bucket appears twice in one admission")
        if len(slots) > 1 and len({slot.name for slot in slots}) != len(slots):
            raise ValueError("a concurrency slot appears twice in one admission")
        now_ms = math.floor(now * 1000)
        for hit in hits:
            _check_hit(hit)
            _check_amount(hit.cost, "rate cost")
        buckets = [self._bucket(hit, now_ms) for hit in hits]
        fits = [
            b.debt + hit.cost * b.window_ms <= b.limit * b.window_ms
            for hit, b in zip(hits, buckets, strict=True)
        ]
        in_flight = self._in_flight
        full = next((s.name for s in slots if in_flight.get(s.name, 0) >= s.limit), None)
        allowed = full is None and all(fits)
        if allowed:
            for hit, bucket in zip(hits, buckets, strict=True):
                bucket.debt += hit.cost * bucket.window_ms
            for slot in slots:
                in_flight[slot.name] = in_flight.get(slot.name, 0) + 1
        states = tuple(
            _bucket_state(bucket, hit.bucket, hit.cost, fit)
            for hit, bucket, fit in zip(hits, buckets, fits, strict=True)
        )
        counts = tuple(in_flight.get(slot.name, 0) for slot in slots)
        return AdmitResult(allowed, states, full, counts)

    async def rate_adjust(self, hits: Sequence[RateHit], now: float) -> tuple[BucketState, ...]:
        now_ms = math.floor(now * 1000)
        states = []
        for hit in hits:
            _check_hit(hit)
            bucket = self._bucket(hit, now_ms)
            bucket.debt = max(bucket.debt + hit.cost * bucket.window_ms, 0)
            fits = bucket.debt <= bucket.limit * bucket.window_ms
            states.append(_bucket_state(bucket, hit.bucket, 0, fits))
        return tuple(states)

    def _bucket(self, hit: RateHit, now_ms: int) -> _Bucket:
        """The bucket of `hit`, decayed to `now_ms` and rescaled if its limit or window changed."""
        window_ms = hit.window_seconds * 1000
        bucket = self._buckets.get(hit.bucket)
        if bucket is None:
            bucket = self._buckets[hit.bucket] = _Bucket(0, now_ms, hit.limit, window_ms)
            return bucket
        elapsed = max(now_ms - bucket.at_ms, 0)
        bucket.debt = max(bucket.debt - elapsed * bucket.limit, 0)
        bucket.at_ms = max(bucket.at_ms, now_ms)
        if bucket.limit != hit.limit or bucket.window_ms != window_ms:
            # Keep the units already used (debt / window_ms) across a reload that changes them.
            bucket.debt = _ceil_div(bucket.debt * window_ms, bucket.window_ms)
            bucket.limit, bucket.window_ms = hit.limit, window_ms
        return bucket

    async def concurrency_release(self, names: Sequence[str]) -> None:
        for name in names:
            count = self._in_flight.get(name, 0) - 1
            if count > 0:
                self._in_flight[name] = count
            else:
                self._in_flight.pop(name, None)

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
