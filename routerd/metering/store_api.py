"""The ledger store's seam: the async `LedgerStore` protocol and the immutable types it takes and
returns. All shared metering state (spend counters with reservations, rate-limit buckets,
concurrency counters) lives behind it; `store.py` holds `InMemoryStore`, the default
implementation. A Redis/Valkey store will implement the same protocol so several routerd
instances share budgets and limits; therefore:

- Every protocol method is ONE atomic operation (a Lua script in Redis). Check-and-hold never
  spans two calls, and nothing here assumes the caller runs in the same process. A request is
  two calls: `admit` (rate hits, concurrency slots and budget holds, all or nothing) and
  `finish` (holds replaced by the actual cost, usage spends, slots back, token corrections).
- Nothing outside a store touches its state; callers only see the immutable result types below
  (named tuples: several are built per request, and a tuple costs a fraction of a frozen
  dataclass).

Counters are unit-agnostic integers (pico-USD for spend, tokens for token budgets), keyed by
(counter id, window start), so a new window starts at zero; `None` is the window of a `total`
period. Rate buckets refill continuously: `limit` units per window, burst up to `limit`
("exactly `limit` hits at once, then one more every window/limit").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol


class Hold(NamedTuple):
    """Hold the reservation's amount on `counter` in the window starting at `window_start`, if
    spent + reserved + amount <= `limit` there. `limit=None` records the hold without any check
    (a counter that is only tracked). A reservation's holds are built once per window by the
    ledger (the amount is the one per-request part), so they carry no amount of their own.
    """

    counter: str
    window_start: datetime | None
    limit: int | None


class Target(NamedTuple):
    """One counter window that a settlement adds the request's actual cost to."""

    counter: str
    window_start: datetime | None


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


class Refusal(NamedTuple):
    """The first hold of an admission that did not fit, with the counter as it stood."""

    counter: str
    window_start: datetime | None
    amount: int
    spent: int
    reserved: int
    limit: int


class RateHit(NamedTuple):
    """Take `cost` units from the bucket `bucket` that refills `limit` units per window.

    As a correction (`finish`, `rate_adjust`) the cost may be negative (units given back, e.g. a
    token estimate corrected).
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


class Admission(NamedTuple):
    """All-or-nothing outcome of `admit`.

    `allowed`: every hit, slot and hold was taken; otherwise nothing was. `buckets`: the rate
    buckets in the order given, after the hits (or as they stand, when refused). A refusal names
    either the full concurrency slot or the rate buckets that had no room (`BucketState.allowed`)
    or, when every rate hit and slot fitted, the first budget hold that did not (`refusal`).
    """

    allowed: bool
    buckets: tuple[BucketState, ...]
    concurrency_refused: str | None = None
    refusal: Refusal | None = None


class LedgerStore(Protocol):
    """Shared metering state. Every method is one atomic operation (see the module docstring).

    A request costs two calls: `admit` before the upstream call and `finish` after it.
    """

    async def admit(
        self,
        reservation_id: str | None,
        amount: int,
        holds: Sequence[Hold],
        hits: Sequence[RateHit],
        slots: Sequence[ConcurrencySlot],
        now: float,
    ) -> Admission:
        """Take every rate hit (at `now`, epoch seconds), one of every concurrency slot and a
        hold of `amount` on every budget counter, if all fit; else take nothing at all.

        Rate hits and slots are checked first: a rate refusal does not look at the holds, and a
        budget refusal takes no hit and no slot. The holds are recorded under `reservation_id`
        (required when there are holds; reusing one that is still held raises `ValueError`).
        """
        ...

    async def finish(
        self,
        reservation_id: str | None,
        actual: int,
        spends: Sequence[Target],
        slots: Sequence[str],
        corrections: Sequence[RateHit],
        now: float,
    ) -> bool:
        """Settle one admitted request: replace the reservation's holds with `actual` spend in
        the windows they were made in, add `actual` to every `spends` window (no limit check),
        give back one of each named concurrency slot (never below zero), and add each
        correction's (possibly negative) cost to its rate bucket at `now` with no limit check.

        Always succeeds (over or under the hold, after a rollover). Returns whether the
        reservation was held: an unknown, already settled or `None` id settles no hold, but
        everything else is still applied.
        """
        ...

    async def add_spend(self, counter: str, window_start: datetime | None, amount: int) -> None:
        """Add settled spend with no limit check (spend captured during a reload's replay)."""
        ...

    async def add_spends(self, spends: Sequence[Spend]) -> None:
        """`add_spend` of each, as one atomic operation (journal replay at startup)."""
        ...

    async def read(self, counter: str, window_start: datetime | None) -> CounterState:
        """The counter window's state; zero if it was never touched or was collected."""
        ...

    async def rate_adjust(self, hits: Sequence[RateHit], now: float) -> tuple[BucketState, ...]:
        """Add each (possibly negative) cost to its bucket with no limit check (startup refill,
        and a token correction outside a request's settlement)."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole state, for admin endpoints and metrics."""
        ...
