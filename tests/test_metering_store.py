"""The in-memory ledger store: reservations, settlement, windows, rate buckets, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from routerd.metering.store import (
    Admission,
    ConcurrencySlot,
    CounterState,
    Hold,
    InMemoryStore,
    LedgerStore,
    RateHit,
    Refusal,
    Target,
)

DAY1 = datetime(2026, 11, 24, tzinfo=UTC)
DAY2 = datetime(2026, 11, 25, tzinfo=UTC)
DAY3 = datetime(2026, 11, 26, tzinfo=UTC)
USD = 10**12
T0 = 1_800_000_000.0  # an epoch-seconds clock value


@pytest.fixture
def store() -> LedgerStore:
    return InMemoryStore()


async def reserve(store: LedgerStore, rid: str, amount: int, holds: list[Hold]) -> Admission:
    """An admission with budget holds only."""
    return await store.admit(rid, amount, holds, (), (), T0)


async def settle(
    store: LedgerStore, rid: str | None, actual: int, spends: tuple[Target, ...] = ()
) -> bool:
    """A settlement with spend only."""
    return await store.finish(rid, actual, spends, (), (), T0)


async def rate_admit(
    store: LedgerStore, hits: list[RateHit], now: float, slots: tuple[ConcurrencySlot, ...] = ()
) -> Admission:
    """An admission with rate hits and slots only."""
    return await store.admit(None, 0, (), hits, slots, now)


async def release_slots(store: LedgerStore, names: list[str]) -> None:
    await store.finish(None, 0, (), names, (), T0)


async def test_reserve_fits_and_holds(store: LedgerStore) -> None:
    result = await reserve(store, "r1", 3 * USD, [Hold("budget:a", DAY1, 10 * USD)])
    assert result.allowed and result.refusal is None
    assert await store.read("budget:a", DAY1) == CounterState(spent=0, reserved=3 * USD)


async def test_reserve_exactly_to_the_limit_fits_one_more_unit_does_not(
    store: LedgerStore,
) -> None:
    assert (await reserve(store, "r1", 6, [Hold("c", DAY1, 10)])).allowed
    assert (await reserve(store, "r2", 4, [Hold("c", DAY1, 10)])).allowed
    refused = await reserve(store, "r3", 1, [Hold("c", DAY1, 10)])
    assert not refused.allowed
    assert refused.refusal == Refusal("c", DAY1, amount=1, spent=0, reserved=10, limit=10)


async def test_refusal_reports_spent_and_reserved(store: LedgerStore) -> None:
    await store.add_spend("c", DAY1, 7)
    await reserve(store, "r1", 2, [Hold("c", DAY1, 10)])
    result = await reserve(store, "r2", 2, [Hold("c", DAY1, 10)])
    assert result.refusal == Refusal("c", DAY1, amount=2, spent=7, reserved=2, limit=10)


async def test_multi_counter_reservation_is_all_or_nothing(store: LedgerStore) -> None:
    await store.add_spend("tag:search", DAY1, 95)
    holds = [
        Hold("key:k1", DAY1, 1000),
        Hold("tag:search", DAY1, 100),  # full: 95 + 10 > 100
        Hold("global", None, 1000),
    ]
    result = await reserve(store, "r1", 10, holds)
    assert not result.allowed
    assert result.refusal is not None and result.refusal.counter == "tag:search"
    assert await store.read("key:k1", DAY1) == CounterState()
    assert await store.read("global", None) == CounterState()
    assert await store.read("tag:search", DAY1) == CounterState(spent=95)
    assert not await settle(store, "r1", 0)  # nothing was recorded under that id
    assert await store.read("key:k1", DAY1) == CounterState()


async def test_first_failing_counter_is_reported(store: LedgerStore) -> None:
    await store.add_spend("a", DAY1, 10)
    await store.add_spend("b", DAY1, 10)
    result = await reserve(store, "r", 1, [Hold("a", DAY1, 10), Hold("b", DAY1, 10)])
    assert result.refusal is not None and result.refusal.counter == "a"


async def test_unlimited_charge_is_tracked_but_never_refuses(store: LedgerStore) -> None:
    assert (await reserve(store, "r", 10**18, [Hold("key:k1", DAY1, None)])).allowed
    await settle(store, "r", 5)
    assert await store.read("key:k1", DAY1) == CounterState(spent=5)


@pytest.mark.parametrize("actual", [0, 2, 5, 9])
async def test_settle_replaces_the_hold_with_actual_cost(store: LedgerStore, actual: int) -> None:
    await reserve(store, "r1", 5, [Hold("a", DAY1, 100), Hold("b", None, 100)])
    assert await settle(store, "r1", actual)
    assert await store.read("a", DAY1) == CounterState(spent=actual)
    assert await store.read("b", None) == CounterState(spent=actual)


async def test_settle_above_the_limit_still_succeeds_and_blocks_later_requests(
    store: LedgerStore,
) -> None:
    await reserve(store, "r1", 5, [Hold("a", DAY1, 10)])
    await settle(store, "r1", 12)  # the upstream billed more than the worst case
    assert await store.read("a", DAY1) == CounterState(spent=12)
    assert not (await reserve(store, "r2", 0, [Hold("a", DAY1, 10)])).allowed


async def test_settle_is_idempotent_and_ignores_unknown_ids(store: LedgerStore) -> None:
    await reserve(store, "r1", 5, [Hold("a", DAY1, 10)])
    assert await settle(store, "r1", 3)
    assert not await settle(store, "r1", 3)
    assert not await settle(store, "nope", 3)
    assert await store.read("a", DAY1) == CounterState(spent=3)


async def test_settle_after_rollover_charges_the_reservations_window(store: LedgerStore) -> None:
    await reserve(store, "old", 5, [Hold("a", DAY1, 10)])
    assert (await reserve(store, "new", 10, [Hold("a", DAY2, 10)])).allowed  # fresh window
    await settle(store, "old", 4)
    assert await store.read("a", DAY1) == CounterState(spent=4)
    assert await store.read("a", DAY2) == CounterState(reserved=10)


async def test_held_window_survives_collection_until_settled(store: LedgerStore) -> None:
    await reserve(store, "slow", 5, [Hold("a", DAY1, 10)])
    await store.add_spend("a", DAY2, 1)
    await store.add_spend("a", DAY3, 1)  # DAY1 is now two windows old but still held
    assert await store.read("a", DAY1) == CounterState(reserved=5)
    assert await settle(store, "slow", 3)
    # settled, the stale window is collected; the live ones are untouched
    assert await store.read("a", DAY1) == CounterState()
    assert await store.read("a", DAY3) == CounterState(spent=1)


async def test_reserving_in_a_stale_window_still_holds(store: LedgerStore) -> None:
    # e.g. an instance whose clock lags: its window is older than the two kept ones
    await store.add_spend("a", DAY2, 1)
    await store.add_spend("a", DAY3, 1)
    assert (await reserve(store, "late", 5, [Hold("a", DAY1, 10)])).allowed
    assert await store.read("a", DAY1) == CounterState(reserved=5)
    assert await settle(store, "late", 0)
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


async def test_add_spend_accumulates_without_a_limit(store: LedgerStore) -> None:
    await store.add_spend("a", DAY1, 7)
    await store.add_spend("a", DAY1, 8)
    assert await store.read("a", DAY1) == CounterState(spent=15)
    assert await store.read("a", DAY2) == CounterState()


async def test_invalid_reservations_are_rejected(store: LedgerStore) -> None:
    await reserve(store, "r1", 1, [Hold("a", DAY1, 10)])
    with pytest.raises(ValueError, match="already held"):
        await reserve(store, "r1", 1, [Hold("a", DAY1, 10)])
    with pytest.raises(ValueError, match="negative"):
        await reserve(store, "r2", -1, [Hold("a", DAY1, 10)])
    with pytest.raises(ValueError, match="twice"):
        await reserve(store, "r3", 1, [Hold("a", DAY1, 10), Hold("a", DAY1, 10)])
    with pytest.raises(ValueError, match="negative"):
        await settle(store, "r1", -1)
    assert await store.read("a", DAY1) == CounterState(reserved=1)


async def test_64_concurrent_reservations_never_exceed_the_limit(store: LedgerStore) -> None:
    limit, hold = 100, 7
    peak = 0

    async def request(i: int) -> bool:
        nonlocal peak
        await asyncio.sleep(0)
        result = await reserve(store, f"r{i}", hold, [Hold("b", DAY1, limit)])
        if not result.allowed:
            return False
        peak = max(peak, (await store.read("b", DAY1)).used)
        await asyncio.sleep(0)
        await settle(store, f"r{i}", hold - i % 3)  # actual at or below the worst case
        return True

    admitted = await asyncio.gather(*(request(i) for i in range(64)))
    state = await store.read("b", DAY1)
    assert peak <= limit
    assert state.reserved == 0 and state.spent <= limit
    assert sum(admitted) >= limit // hold
    assert (await store.snapshot())["reservations"] == 0


async def test_snapshot_is_json_ready(store: LedgerStore) -> None:
    await reserve(store, "r1", 5, [Hold("a", None, 10)])
    await rate_admit(store, [RateHit("rpm:k", 1, 10, 60)], T0, (ConcurrencySlot("c:k", 2),))
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
        result = await rate_admit(store, [hit], T0)
        assert result.allowed
        assert result.buckets[0].remaining == expected_remaining
    refused = await rate_admit(store, [hit], T0)
    assert not refused.allowed
    assert refused.buckets[0].retry_after == 8.572  # ceil(60000 / 7) ms
    assert refused.buckets[0].reset_after == 60.0
    assert not (await rate_admit(store, [hit], T0 + 8.571)).allowed
    assert (await rate_admit(store, [hit], T0 + 8.572)).allowed


async def test_rate_cost_larger_than_limit_can_never_fit(store: LedgerStore) -> None:
    result = await rate_admit(store, [RateHit("tpm:k", 101, 100, 60)], T0)
    assert not result.allowed
    assert result.buckets[0].retry_after is None
    assert result.buckets[0].remaining == 100


async def test_rate_admit_is_all_or_nothing_across_buckets_and_slots(store: LedgerStore) -> None:
    rpm, tpm = RateHit("rpm:k", 1, 10, 60), RateHit("tpm:k", 500, 1000, 60)
    assert (await rate_admit(store, [rpm, tpm], T0)).allowed
    big = RateHit("tpm:k", 600, 1000, 60)
    refused = await rate_admit(store, [rpm, big], T0)
    assert not refused.allowed
    assert [b.allowed for b in refused.buckets] == [True, False]
    assert refused.buckets[0].remaining == 9  # the rpm hit was not taken
    slot = ConcurrencySlot("c:k", 1)
    assert (await rate_admit(store, [rpm], T0, (slot,))).allowed
    blocked = await rate_admit(store, [rpm], T0, (slot,))
    assert not blocked.allowed and blocked.concurrency_refused == "c:k"
    assert blocked.buckets[0].remaining == 8  # still 8: the refused admission took nothing


async def test_rate_adjust_gives_back_and_takes_more(store: LedgerStore) -> None:
    await rate_admit(store, [RateHit("tpm:k", 800, 1000, 60)], T0)
    (state,) = await store.rate_adjust([RateHit("tpm:k", -500, 1000, 60)], T0)
    assert state.remaining == 700
    (state,) = await store.rate_adjust([RateHit("tpm:k", -5000, 1000, 60)], T0)
    assert state.remaining == 1000 and state.reset_after == 0.0  # never beyond a full bucket
    (state,) = await store.rate_adjust([RateHit("tpm:k", 1500, 1000, 60)], T0)
    assert state.remaining == 0 and not state.allowed  # in debt
    assert state.reset_after == 90.0
    assert not (await rate_admit(store, [RateHit("tpm:k", 1, 1000, 60)], T0 + 30)).allowed
    assert (await rate_admit(store, [RateHit("tpm:k", 1, 1000, 60)], T0 + 30.06)).allowed


async def test_rate_limit_change_keeps_units_used(store: LedgerStore) -> None:
    await rate_admit(store, [RateHit("rpm:k", 6, 10, 60)], T0)
    result = await rate_admit(store, [RateHit("rpm:k", 0, 100, 60)], T0)
    assert result.buckets[0].remaining == 94


async def test_rate_clock_going_backwards_does_not_refill(store: LedgerStore) -> None:
    hit = RateHit("rpm:k", 1, 1, 60)
    assert (await rate_admit(store, [hit], T0)).allowed
    assert not (await rate_admit(store, [hit], T0 - 100)).allowed
    assert not (await rate_admit(store, [hit], T0 + 59.999)).allowed
    assert (await rate_admit(store, [hit], T0 + 60)).allowed


async def test_concurrency_release_never_goes_below_zero(store: LedgerStore) -> None:
    slot = ConcurrencySlot("c:k", 1)
    await rate_admit(store, [], T0, (slot,))
    await release_slots(store, ["c:k"])
    await release_slots(store, ["c:k"])
    assert (await store.snapshot())["concurrency"] == {}
    assert (await rate_admit(store, [], T0, (slot,))).allowed
    assert (await store.snapshot())["concurrency"] == {"c:k": 1}
    assert not (await rate_admit(store, [], T0, (slot,))).allowed


async def test_invalid_rate_hits_are_rejected(store: LedgerStore) -> None:
    with pytest.raises(ValueError):
        await rate_admit(store, [RateHit("a", 1, 0, 60)], T0)
    with pytest.raises(ValueError):
        await rate_admit(store, [RateHit("a", -1, 10, 60)], T0)
    with pytest.raises(ValueError, match="twice"):
        await rate_admit(store, [RateHit("a", 1, 10, 60), RateHit("a", 1, 10, 60)], T0)


# -- one admission, one settlement: rate hits, slots and budget holds together --------------------

RPM, TPM = RateHit("rpm:k", 1, 10, 60), RateHit("tpm:k", 100, 1000, 60)
SLOT = ConcurrencySlot("c:k", 1)


async def admit_all(store: LedgerStore, rid: str, amount: int, limit: int) -> Admission:
    return await store.admit(rid, amount, [Hold("b", DAY1, limit)], [RPM, TPM], [SLOT], T0)


async def test_admit_takes_hits_slots_and_holds_together(store: LedgerStore) -> None:
    result = await admit_all(store, "r1", 5, 10)
    assert result.allowed and result.refusal is None and result.concurrency_refused is None
    assert [(b.bucket, b.remaining) for b in result.buckets] == [("rpm:k", 9), ("tpm:k", 900)]
    assert await store.read("b", DAY1) == CounterState(reserved=5)
    snapshot = await store.snapshot()
    assert snapshot["concurrency"] == {"c:k": 1} and snapshot["reservations"] == 1


async def test_a_budget_refusal_takes_no_rate_hit_and_no_slot(store: LedgerStore) -> None:
    await store.add_spend("b", DAY1, 8)
    refused = await admit_all(store, "r1", 5, 10)
    assert not refused.allowed
    assert refused.refusal == Refusal("b", DAY1, amount=5, spent=8, reserved=0, limit=10)
    assert refused.concurrency_refused is None
    assert all(b.allowed for b in refused.buckets)  # the buckets had room ...
    assert [b.remaining for b in refused.buckets] == [10, 1000]  # ... and gave nothing
    snapshot = await store.snapshot()
    assert snapshot["concurrency"] == {} and snapshot["reservations"] == 0
    assert [b["used_units"] for b in snapshot["rate_buckets"]] == [0, 0]
    assert not await settle(store, "r1", 0)  # nothing was recorded under that id


async def test_a_rate_refusal_holds_no_budget(store: LedgerStore) -> None:
    big = RateHit("tpm:k", 2000, 1000, 60)
    refused = await store.admit("r1", 5, [Hold("b", DAY1, 10)], [RPM, big], [SLOT], T0)
    assert not refused.allowed and refused.refusal is None
    assert [b.allowed for b in refused.buckets] == [True, False]
    assert await store.read("b", DAY1) == CounterState()
    assert (await store.snapshot())["concurrency"] == {}
    assert not await settle(store, "r1", 0)


async def test_a_concurrency_refusal_holds_no_budget_and_takes_no_hit(store: LedgerStore) -> None:
    assert (await admit_all(store, "r1", 1, 10)).allowed
    refused = await admit_all(store, "r2", 1, 10)
    assert not refused.allowed and refused.concurrency_refused == "c:k"
    assert refused.refusal is None
    assert [b.remaining for b in refused.buckets] == [9, 900]
    assert await store.read("b", DAY1) == CounterState(reserved=1)


async def test_finish_gives_everything_back_in_one_call(store: LedgerStore) -> None:
    assert (await admit_all(store, "r1", 5, 10)).allowed
    usage = (Target("usage:k:daily", DAY1), Target("usage:k:total", None))
    correction = RateHit("tpm:k", -60, 1000, 60)  # used 40 of the 100 tokens admitted
    assert await store.finish("r1", 3, usage, ["c:k"], [correction], T0)
    assert await store.read("b", DAY1) == CounterState(spent=3)
    assert await store.read("usage:k:daily", DAY1) == CounterState(spent=3)
    assert await store.read("usage:k:total", None) == CounterState(spent=3)
    snapshot = await store.snapshot()
    assert snapshot["concurrency"] == {} and snapshot["reservations"] == 0
    assert snapshot["rate_buckets"][1]["used_units"] == 40
    assert (await admit_all(store, "r2", 5, 10)).allowed  # the slot is free again


async def test_finish_after_rollover_settles_in_the_admissions_window(store: LedgerStore) -> None:
    assert (await admit_all(store, "r1", 5, 10)).allowed
    # the request ends the next day: its hold is settled on DAY1, its usage goes to DAY2
    assert await store.finish("r1", 4, (Target("usage:k:daily", DAY2),), ["c:k"], (), T0 + 86400)
    assert await store.read("b", DAY1) == CounterState(spent=4)
    assert await store.read("b", DAY2) == CounterState()
    assert await store.read("usage:k:daily", DAY2) == CounterState(spent=4)


async def test_finish_of_an_unknown_reservation_still_applies_the_rest(
    store: LedgerStore,
) -> None:
    assert (await store.admit(None, 0, (), [TPM], [SLOT], T0)).allowed
    correction = RateHit("tpm:k", -100, 1000, 60)
    usage = (Target("usage:k:daily", DAY1),)
    assert not await store.finish("nope", 7, usage, ["c:k"], [correction], T0)
    assert await store.read("usage:k:daily", DAY1) == CounterState(spent=7)
    snapshot = await store.snapshot()
    assert snapshot["concurrency"] == {} and snapshot["rate_buckets"][0]["used_units"] == 0


async def test_holds_need_a_reservation_id(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="reservation id"):
        await store.admit(None, 1, [Hold("b", DAY1, 10)], (), (), T0)
    with pytest.raises(ValueError, match="twice"):
        await store.admit(None, 0, (), [], [SLOT, SLOT], T0)
