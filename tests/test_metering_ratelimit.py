"""Rate limits as the server runs them: a key's `RatePlan` admitted by `Ledger.admit` and given
back by `Ledger.settle` (rpm/tpm/concurrency decisions, OpenAI-style headers, token correction,
slot release), the startup `refill`, and the reset-header durations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from routerd.config.model import RateLimits
from routerd.metering.ledger import Ledger, Reservation, Settled
from routerd.metering.ratelimit import (
    RateDecision,
    RatePlan,
    RateScope,
    format_duration,
    refill,
)
from routerd.metering.store import InMemoryStore

T0 = 1_800_000_000.0
DONE = Settled("req-1", "k", None, (), "m/a", 0)  # a finished request that cost nothing


class Clock:
    """A settable clock in epoch seconds, read as the gateway's ledger reads its clock."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def ledger(store: InMemoryStore, clock: Clock) -> Ledger:
    return Ledger(store, clock)


def plan(limits: RateLimits, scope_id: str = "key:k") -> RatePlan:
    """The rate plan of a key whose only limits are `limits`."""
    return RatePlan([RateScope(scope_id, limits)])


class Admission:
    """One request admitted on its key's plan alone (no budgets), as `server/admission.py`
    admits it: the decision, and the reservation to settle when it was allowed."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def __call__(
        self, rate: RatePlan, tokens: int
    ) -> tuple[RateDecision, Reservation | None]:
        admitted = await self.ledger.admit((), 0, rate, tokens)
        assert admitted.rate is not None
        held = admitted.held
        assert held is None or isinstance(held, Reservation)
        assert (held is not None) == admitted.rate.allowed
        return admitted.rate, held

    async def decide(self, rate: RatePlan, tokens: int) -> RateDecision:
        return (await self(rate, tokens))[0]

    async def settle(self, held: Reservation | None, used_tokens: int = 0) -> None:
        """The request finished having used `used_tokens` (what `server/context.py` settles)."""
        await self.ledger.settle(held, DONE, used_tokens)

    @asynccontextmanager
    async def request(self, rate: RatePlan, tokens: int) -> AsyncIterator[RateDecision]:
        """Admit, run the block, settle however it ends (as the server's `metered` does)."""
        decision, held = await self(rate, tokens)
        try:
            yield decision
        finally:
            await self.settle(held)


@pytest.fixture
def admit(ledger: Ledger) -> Admission:
    return Admission(ledger)


async def in_flight(store: InMemoryStore) -> dict[str, int]:
    concurrency: dict[str, int] = (await store.snapshot())["concurrency"]
    return concurrency


async def test_rpm_is_exact_at_the_limit_and_429_carries_retry_after(
    admit: Admission, clock: Clock
) -> None:
    rate = plan(RateLimits(rpm=5))
    for remaining in (4, 3, 2, 1, 0):
        decision = await admit.decide(rate, 10)
        assert decision.allowed and decision.requests is not None
        assert decision.requests.remaining == remaining
    refused = await admit.decide(rate, 10)
    assert not refused.allowed
    assert (refused.failed, refused.failed_scope) == ("requests", "key:k")
    assert refused.retry_after_seconds == 12.0
    assert refused.headers() == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "retry-after": "12",
        "retry-after-ms": "12000",
    }
    clock.now = T0 + 11.999
    assert not (await admit.decide(rate, 10)).allowed
    clock.now = T0 + 12
    assert (await admit.decide(rate, 10)).allowed


async def test_headers_of_an_allowed_request(admit: Admission) -> None:
    decision = await admit.decide(plan(RateLimits(rpm=600, tpm=200_000)), 1500)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "198500",
        "x-ratelimit-reset-tokens": "450ms",
    }


async def test_tpm_refusal_and_correction_by_actual_usage(admit: Admission) -> None:
    rate = plan(RateLimits(tpm=1000))
    first, held = await admit(rate, 600)
    assert first.allowed and first.tokens is not None and first.tokens.remaining == 400
    refused = await admit.decide(rate, 600)
    assert not refused.allowed and refused.failed == "tokens"
    assert refused.retry_after_seconds == 12.0  # 200 tokens short at 1000 tokens / 60 s
    await admit.settle(held, 100)  # the first request really used 100: 500 go back
    again = await admit.decide(rate, 600)
    assert again.allowed and again.tokens is not None and again.tokens.remaining == 300


async def test_tpm_correction_upwards_leaves_the_scope_in_debt(
    admit: Admission, clock: Clock
) -> None:
    rate = plan(RateLimits(tpm=1000))
    _, held = await admit(rate, 100)
    await admit.settle(held, 1300)  # 300 over the whole limit
    refused = await admit.decide(rate, 1)
    assert not refused.allowed and refused.tokens is not None
    assert refused.tokens.remaining == 0
    assert refused.retry_after_seconds == 18.06  # 301 tokens to drain at 1000 / 60 s
    clock.now = T0 + 18.06
    assert (await admit.decide(rate, 1)).allowed


async def test_request_larger_than_tpm_is_refused_without_retry_after(admit: Admission) -> None:
    decision = await admit.decide(plan(RateLimits(rpm=10, tpm=1000)), 1001)
    assert not decision.allowed and decision.exceeds_limit
    assert decision.failed == "tokens" and decision.retry_after_seconds is None
    headers = decision.headers()
    assert "retry-after" not in headers
    assert headers["x-ratelimit-remaining-requests"] == "10"  # the refusal took nothing


async def test_refusal_by_one_scope_consumes_nothing_in_the_others(admit: Admission) -> None:
    rate = RatePlan(
        [RateScope("key:k", RateLimits(rpm=10)), RateScope("user:alice", RateLimits(rpm=2))]
    )
    for _ in range(2):
        assert (await admit.decide(rate, 0)).allowed
    refused = await admit.decide(rate, 0)
    assert not refused.allowed
    assert refused.failed_scope == "user:alice"
    assert refused.requests is not None and refused.requests.scope_id == "user:alice"
    key_only = await admit.decide(plan(RateLimits(rpm=10)), 0)
    assert key_only.requests is not None and key_only.requests.remaining == 7


async def test_headers_report_the_tightest_scope(admit: Admission) -> None:
    rate = RatePlan(
        [
            RateScope("key:k", RateLimits(rpm=100, tpm=5000)),
            RateScope("tag:search", RateLimits(rpm=10, tpm=100_000)),
        ]
    )
    decision = await admit.decide(rate, 1000)
    assert decision.requests is not None and decision.tokens is not None
    assert (decision.requests.scope_id, decision.requests.remaining) == ("tag:search", 9)
    assert (decision.tokens.scope_id, decision.tokens.remaining) == ("key:k", 4000)


async def test_no_limits_means_allowed_without_a_decision_or_a_bucket(
    ledger: Ledger, store: InMemoryStore
) -> None:
    admitted = await ledger.admit((), 0, plan(RateLimits()), 10**9)
    assert admitted.rate is None and isinstance(admitted.held, Reservation)  # no headers
    assert (await store.snapshot())["rate_buckets"] == []


async def test_concurrency_limit_and_release(admit: Admission, store: InMemoryStore) -> None:
    rate = plan(RateLimits(concurrency=2))
    first, first_held = await admit(rate, 0)
    second, second_held = await admit(rate, 0)
    assert first.allowed and second.allowed
    assert await in_flight(store) == {"concurrency:key:k": 2}
    third = await admit.decide(rate, 0)
    assert not third.allowed and third.failed == "concurrency"
    assert third.headers()["retry-after"] == "1"
    assert await in_flight(store) == {"concurrency:key:k": 2}  # the refusal took no slot
    await admit.settle(first_held)
    assert await in_flight(store) == {"concurrency:key:k": 1}
    fourth, fourth_held = await admit(rate, 0)
    assert fourth.allowed
    await admit.settle(second_held)
    await admit.settle(fourth_held)
    assert await in_flight(store) == {}


async def test_concurrency_refusal_does_not_spend_rpm(admit: Admission) -> None:
    rate = plan(RateLimits(rpm=5, concurrency=1))
    async with admit.request(rate, 0) as held:
        assert held.allowed
        refused = await admit.decide(rate, 0)
        assert not refused.allowed and refused.failed == "concurrency"
        assert refused.requests is not None and refused.requests.remaining == 4


async def test_concurrency_is_released_when_the_request_raises(
    admit: Admission, store: InMemoryStore
) -> None:
    rate = plan(RateLimits(concurrency=1))
    with pytest.raises(RuntimeError, match="upstream blew up"):
        async with admit.request(rate, 0) as decision:
            assert decision.allowed
            assert await in_flight(store) == {"concurrency:key:k": 1}
            raise RuntimeError("upstream blew up")
    assert await in_flight(store) == {}
    assert (await admit.decide(rate, 0)).allowed


async def test_concurrency_is_released_when_the_request_is_cancelled(
    admit: Admission, store: InMemoryStore
) -> None:
    rate = plan(RateLimits(concurrency=1))
    entered = asyncio.Event()

    async def request() -> None:
        async with admit.request(rate, 0):
            entered.set()
            await asyncio.Event().wait()  # a stream that never ends

    task = asyncio.create_task(request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await in_flight(store) == {}


async def test_64_tasks_never_exceed_the_concurrency_limit(admit: Admission) -> None:
    rate = plan(RateLimits(concurrency=4))
    running = peak = 0

    async def request() -> bool:
        nonlocal running, peak
        async with admit.request(rate, 0) as decision:
            if not decision.allowed:
                return False
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            return True

    admitted = await asyncio.gather(*(request() for _ in range(64)))
    assert peak <= 4 and 4 <= sum(admitted) < 64


async def test_duplicate_scopes_count_once(admit: Admission) -> None:
    scope = RateScope("key:k", RateLimits(rpm=3))
    decision = await admit.decide(RatePlan([scope, scope]), 0)
    assert decision.requests is not None and decision.requests.remaining == 2


async def test_negative_estimate_is_rejected(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.admit((), 0, plan(RateLimits(tpm=10)), -1)


async def test_startup_refill_charges_the_last_minute_capped_at_each_limit(
    admit: Admission, store: InMemoryStore
) -> None:
    key = RateScope("key:k", RateLimits(rpm=10, tpm=1000))
    user = RateScope("user:alice", RateLimits(rpm=4))
    await refill(store, [(key, 3, 400), (user, 50, 400)], T0)  # alice: 50 is above her 4 rpm
    rate = RatePlan([key, user])
    refused = await admit.decide(rate, 100)
    assert not refused.allowed and refused.failed_scope == "user:alice"
    assert refused.retry_after_seconds == 15.0  # a full bucket of debt, not 50 requests' worth
    decision = await admit.decide(plan(RateLimits(rpm=10, tpm=1000)), 100)
    assert decision.requests is not None and decision.requests.remaining == 6
    assert decision.tokens is not None and decision.tokens.remaining == 500


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.0004, "1ms"),
        (0.012, "12ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (8.572, "8.572s"),
        (12, "12s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.45, "1h2m3.45s"),
    ],
)
def test_format_duration_matches_openai_reset_headers(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
