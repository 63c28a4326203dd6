"""The in-memory ledger store: reservations, settlement, windows, rate buckets, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from routerd.metering.store import (
    Charge,
    ConcurrencySlot,
    CounterState,
    InMemoryStore,
    LedgerStore,
    RateHit,
    Refusal,
)

DAY1 = datetime(2026, 11, 24, tzinfo=UTC)
DAY2 = datetime(2026, 11, 25, tzinfo=UTC)
DAY3 = datetime(2026, 11, 26, tzinfo=UTC)
USD = 10**12
T0 = 1_800_000_000.0  # an epoch-seconds clock value


@pytest.fixture
def store() -> LedgerStore:
    return InMemoryStore()


async def test_reserve_fits_and_holds(store: LedgerStore) -> None:
    result = await store.reserve("r1", [Charge("budget:a", DAY1, 3 * USD, 10 * USD)])
    assert result.ok and result.refusal is None
    assert [(r.counter, r.reserved, r.spent, r.limit) for r in result.readings] == [
        ("budget:a", 3 * USD, 0, 10 * USD)
    ]
    assert await store.read("budget:a", DAY1) == CounterState(spent=0, reserved=3 * USD)


async def test_reserve_exactly_to_the_limit_fits_one_more_unit_does_not(
    store: LedgerStore,
) -> None:
    assert (await store.reserve("r1", [Charge("c", DAY1, 6, 10)])).ok
    assert (await store.reserve("r2", [Charge("c", DAY1, 4, 10)])).ok
    refused = await store.reserve("r3", [Charge("c", DAY1, 1, 10)])
    assert not refused.ok
    assert refused.refusal == Refusal("c", DAY1, amount=1, spent=0, reserved=10, limit=10)


async def test_refusal_reports_spent_and_reserved(store: LedgerStore) -> None:
    await store.add_spend("c", DAY1, 7)
    await store.reserve("r1", [Charge("c", DAY1, 2, 10)])
    result = await store.reserve("r2", [Charge("c", DAY1, 2, 10)])
    assert result.refusal == Refusal("c", DAY1, amount=2, spent=7, reserved=2, limit=10)


async def test_multi_counter_reservation_is_all_or_nothing(store: LedgerStore) -> None:
    await store.add_spend("tag:search", DAY1, 95)
    charges = [
        Charge("key:k1", DAY1, 10, 1000),
        Charge("tag:search", DAY1, 10, 100),  # full: 95 + 10 > 100
        Charge("global", None, 10, 1000),
    ]
    result = await store.reserve("r1", charges)
    assert not result.ok
    assert result.refusal is not None and result.refusal.counter == "tag:search"
    assert await store.read("key:k1", DAY1) == CounterState()
    assert await store.read("global", None) == CounterState()
    assert await store.read("tag:search", DAY1) == CounterState(spent=95)
    assert not await store.release("r1")  # nothing was recorded under that id


async def test_first_failing_counter_is_reported(store: LedgerStore) -> None:
    await store.add_spend("a", DAY1, 10)
    await store.add_spend("b", DAY1, 10)
    result = await store.reserve("r", [Charge("a", DAY1, 1, 10), Charge("b", DAY1, 1, 10)])
    assert result.refusal is not None and result.refusal.counter == "a"


async def test_unlimited_charge_is_tracked_but_never_refuses(store: LedgerStore) -> None:
    assert (await store.reserve("r", [Charge("key:k1", DAY1, 10**18, None)])).ok
    await store.settle("r", 5)
    assert await store.read("key:k1", DAY1) == CounterState(spent=5)


@pytest.mark.parametrize("actual", [0, 2, 5, 9])
async def test_settle_replaces_the_hold_with_actual_cost(store: LedgerStore, actual: int) -> None:
    await store.reserve("r1", [Charge("a", DAY1, 5, 100), Charge("b", None, 5, 100)])
    readings = await store.settle("r1", actual)
    assert [(r.counter, r.spent, r.reserved) for r in readings] == [
        ("a", actual, 0),
        ("b", actual, 0),
    ]
    assert await store.read("a", DAY1) == CounterState(spent=actual)
    assert await store.read("b", None) == CounterState(spent=actual)


async def test_settle_above_the_limit_still_succeeds_and_blocks_later_requests(
    store: LedgerStore,
) -> None:
    await store.reserve("r1", [Charge("a", DAY1, 5, 10)])
    await store.settle("r1", 12)  # the upstream billed more than the worst case
    assert await store.read("a", DAY1) == CounterState(spent=12)
    assert not (await store.reserve("r2", [Charge("a", DAY1, 0, 10)])).ok


async def test_settle_is_idempotent_and_ignores_unknown_ids(store: LedgerStore) -> None:
    await store.reserve("r1", [Charge("a", DAY1, 5, 10)])
    assert await store.settle("r1", 3)
    assert await store.settle("r1", 3) == ()
    assert await store.settle("nope", 3) == ()
    assert await store.read("a", DAY1) == CounterState(spent=3)


async def test_settle_after_rollover_charges_the_reservations_window(store: LedgerStore) -> None:
    await store.reserve("old", [Charge("a", DAY1, 5, 10)])
    assert (await store.reserve("new", [Charge("a", DAY2, 10, 10)])).ok  # fresh window
    await store.settle("old", 4)
    assert await store.read("a", DAY1) == CounterState(spent=4)
    assert await store.read("a", DAY2) == CounterState(reserved=10)


async def test_held_window_survives_collection_until_settled(store: LedgerStore) -> None:
    await store.reserve("slow", [Charge("a", DAY1, 5, 10)])
    await store.add_spend("a", DAY2, 1)
    await store.add_spend("a", DAY3, 1)  # DAY1 is now two windows old but still held
    assert await store.read("a", DAY1) == CounterState(reserved=5)
    (reading,) = await store.settle("slow", 3)
    assert (reading.window_start, reading.spent, reading.reserved) == (DAY1, 3, 0)
    # settled, the stale window is collected; the live ones are untouched
    assert await store.read("a", DAY1) == CounterState()
    assert await store.read("a", DAY3) == CounterState(spent=1)


async def test_reserving_in_a_stale_window_still_holds(store: LedgerStore) -> None:
    # e.g. an instance whose clock lags: its window is older than the two kept ones
    await store.add_spend("a", DAY2, 1)
    await store.add_spend("a", DAY3, 1)
    assert (await store.reserve("late", [Charge("a", DAY1, 5, 10)])).ok
    assert await store.read("a", DAY1) == CounterState(reserved=5)
    assert await store.release("late")
    assert await store.read("a", DAY1) == CounterState()
    assert await store.read("a", DAY2) == CounterState(spent=1)


async def test_only_current_and_previous_windows_are_kept(store: LedgerStore) -> None:
    for day in (DAY1, DAY2, DAY3):
        await store.add_spend("a", day, 1)
    assert await store.read("a", DAY1) == CounterState()
    assert await store.read("a", DAY2) == CounterState(spent=1)
    assert await store.read("a", DAY3) == CounterState(spent=1)
    snapshot = await store.snapshot()
    assert [c["window_start"] for c in snapshot["counters"]] == [
        DAY2.isoformat(),
        DAY3.isoformat(),
    ]


async def test_release_drops_the_hold(store: LedgerStore) -> None:
    await store.reserve("r1", [Charge("a", DAY1, 5, 10)])
    assert await store.release("r1")
    assert not await store.release("r1")
    assert await store.read("a", DAY1) == CounterState()
    assert await store.settle("r1", 5) == ()  # a released reservation cannot be settled


async def test_add_spend_accumulates_without_a_limit(store: LedgerStore) -> None:
    await store.add_spend("a", DAY1, 7)
    await store.add_spend("a", DAY1, 8)
    assert await store.read("a", DAY1) == CounterState(spent=15)
    assert await store.read("a", DAY2) == CounterState()


async def test_invalid_reservations_are_rejected(store: LedgerStore) -> None:
    await store.reserve("r1", [Charge("a", DAY1, 1, 10)])
    with pytest.raises(ValueError, match="already held"):
        await store.reserve("r1", [Charge("a", DAY1, 1, 10)])
    with pytest.raises(ValueError, match="negative"):
        await store.reserve("r2", [Charge("a", DAY1, -1, 10)])
    with pytest.raises(ValueError, match="twice"):
        await store.reserve("r3", [Charge("a", DAY1, 1, 10), Charge("a", DAY1, 1, 10)])
    with pytest.raises(ValueError, match="negative"):
        await store.settle("r1", -1)
    assert await store.read("a", DAY1) == CounterState(reserved=1)


async def test_64_concurrent_reservations_never_exceed_the_limit(store: LedgerStore) -> None:
    limit, hold = 100, 7
    peak = 0

    async def request(i: int) -> bool:
        nonlocal peak
        await asyncio.sleep(0)
        result = await store.reserve(f"r{i}", [Charge("b", DAY1, hold, limit)])
        if not result.ok:
            return False
        peak = max(peak, (await store.read("b", DAY1)).used)
        await asyncio.sleep(0)
        await store.settle(f"r{i}", hold - i % 3)  # actual at or below the worst case
        return True

    admitted = await asyncio.gather(*(request(i) for i in range(64)))
    state = await store.read("b", DAY1)
    assert peak <= limit
    assert state.reserved == 0 and state.spent <= limit
    assert sum(admitted) >= limit // hold
    assert (await store.snapshot())["reservations"] == 0


async def test_snapshot_is_json_ready(store: LedgerStore) -> None:
    await store.reserve("r1", [Charge("a", None, 5, 10)])
    await store.rate_admit([RateHit("rpm:k", 1, 10, 60)], T0, [ConcurrencySlot("c:k", 2)])
    snapshot = await store.snapshot()
    assert snapshot["counters"] == [
        {"counter": "a", "window_start": None, "spent": 0, "reserved": 5}
    ]
    assert snapshot["reservations"] == 1
    assert snapshot["rate_buckets"][0]["bucket"] == "rpm:k"
    assert snapshot["rate_buckets"][0]["used_units"] == 1.0
    assert snapshot["concurrency"] == {"c:k": 1}


# -- rate buckets (integer GCRA) ------------------------------------------------------------------


async def test_rate_bucket_allows_exactly_the_limit_then_refills_continuously(
    store: LedgerStore,
) -> None:
    hit = RateHit("rpm:k", 1, 7, 60)  # 60/7 s per request: not a whole number of ms
    for expected_remaining in range(6, -1, -1):
        result = await store.rate_admit([hit], T0)
        assert result.allowed
        assert result.buckets[0].remaining == expected_remaining
    refused = await store.rate_admit([hit], T0)
    assert not refused.allowed
    assert refused.buckets[0].retry_after == 8.572  # ceil(60000 / 7) ms
    assert refused.buckets[0].reset_after == 60.0
    assert not (await store.rate_admit([hit], T0 + 8.571)).allowed
    assert (await store.rate_admit([hit], T0 + 8.572)).allowed


async def test_rate_cost_larger_than_limit_can_never_fit(store: LedgerStore) -> None:
    result = await store.rate_admit([RateHit("tpm:k", 101, 100, 60)], T0)
    assert not result.allowed
    assert result.buckets[0].retry_after is None
    assert result.buckets[0].remaining == 100


async def test_rate_admit_is_all_or_nothing_across_buckets_and_slots(store: LedgerStore) -> None:
    rpm, tpm = RateHit("rpm:k", 1, 10, 60), RateHit("tpm:k", 500, 1000, 60)
    assert (await store.rate_admit([rpm, tpm], T0)).allowed
    big = RateHit("tpm:k", 600, 1000, 60)
    refused = await store.rate_admit([rpm, big], T0)
    assert not refused.allowed
    assert [b.allowed for b in refused.buckets] == [True, False]
    assert refused.buckets[0].remaining == 9  # the rpm hit was not taken
    slot = ConcurrencySlot("c:k", 1)
    assert (await store.rate_admit([rpm], T0, [slot])).allowed
    blocked = await store.rate_admit([rpm], T0, [slot])
    assert not blocked.allowed and blocked.concurrency_refused == "c:k"
    assert blocked.buckets[0].remaining == 8  # still 8: the refused admission took nothing


async def test_rate_adjust_gives_back_and_takes_more(store: LedgerStore) -> None:
    await store.rate_admit([RateHit("tpm:k", 800, 1000, 60)], T0)
    (state,) = await store.rate_adjust([RateHit("tpm:k", -500, 1000, 60)], T0)
    assert state.remaining == 700
    (state,) = await store.rate_adjust([RateHit("tpm:k", -5000, 1000, 60)], T0)
    assert state.remaining == 1000 and state.reset_after == 0.0  # never beyond a full bucket
    (state,) = await store.rate_adjust([RateHit("tpm:k", 1500, 1000, 60)], T0)
    assert state.remaining == 0 and not state.allowed  # in debt
    assert state.reset_after == 90.0
    assert not (await store.rate_admit([RateHit("tpm:k", 1, 1000, 60)], T0 + 30)).allowed
    assert (await store.rate_admit([RateHit("tpm:k", 1, 1000, 60)], T0 + 30.06)).allowed


async def test_rate_limit_change_keeps_units_used(store: LedgerStore) -> None:
    await store.rate_admit([RateHit("rpm:k", 6, 10, 60)], T0)
    result = await store.rate_admit([RateHit("rpm:k", 0, 100, 60)], T0)
    assert result.buckets[0].remaining == 94


async def test_rate_clock_going_backwards_does_not_refill(store: LedgerStore) -> None:
    hit = RateHit("rpm:k", 1, 1, 60)
    assert (await store.rate_admit([hit], T0)).allowed
    assert not (await store.rate_admit([hit], T0 - 100)).allowed
    assert not (await store.rate_admit([hit], T0 + 59.999)).allowed
    assert (await store.rate_admit([hit], T0 + 60)).allowed


async def test_concurrency_release_never_goes_below_zero(store: LedgerStore) -> None:
    slot = ConcurrencySlot("c:k", 1)
    await store.rate_admit([], T0, [slot])
    await store.concurrency_release(["c:k"])
    await store.concurrency_release(["c:k"])
    assert (await store.snapshot())["concurrency"] == {}
    assert (await store.rate_admit([], T0, [slot])).in_flight == (1,)
    assert not (await store.rate_admit([], T0, [slot])).allowed


async def test_invalid_rate_hits_are_rejected(store: LedgerStore) -> None:
    with pytest.raises(ValueError):
        await store.rate_admit([RateHit("a", 1, 0, 60)], T0)
    with pytest.raises(ValueError):
        await store.rate_admit([RateHit("a", -1, 10, 60)], T0)
    with pytest.raises(ValueError, match="twice"):
        await store.rate_admit([RateHit("a", 1, 10, 60), RateHit("a", 1, 10, 60)], T0)
