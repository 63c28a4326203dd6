"""Rate limiter: rpm/tpm/concurrency decisions, OpenAI-style headers, token correction, leases."""

from __future__ import annotations

import asyncio

import pytest

from routerd.config.model import RateLimits
from routerd.metering.ratelimit import (
    ConcurrencyLease,
    RateLimiter,
    RateScope,
    format_duration,
)
from routerd.metering.store import InMemoryStore

T0 = 1_800_000_000.0


class Clock:
    """A settable clock in epoch seconds."""

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
def limiter(store: InMemoryStore, clock: Clock) -> RateLimiter:
    return RateLimiter(store, clock)


async def in_flight(store: InMemoryStore) -> dict[str, int]:
    concurrency: dict[str, int] = (await store.snapshot())["concurrency"]
    return concurrency


async def test_rpm_is_exact_at_the_limit_and_429_carries_retry_after(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = RateLimits(rpm=5)
    for remaining in (4, 3, 2, 1, 0):
        decision = await limiter.check(limits, "key:k", 10)
        assert decision.allowed and decision.requests is not None
        assert decision.requests.remaining == remaining
    refused = await limiter.check(limits, "key:k", 10)
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
    assert not (await limiter.check(limits, "key:k", 10)).allowed
    clock.now = T0 + 12
    assert (await limiter.check(limits, "key:k", 10)).allowed


async def test_headers_of_an_allowed_request(limiter: RateLimiter) -> None:
    limits = RateLimits(rpm=600, tpm=200_000)
    decision = await limiter.check(limits, "key:k", 1500, now=T0)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "198500",
        "x-ratelimit-reset-tokens": "450ms",
    }


async def test_tpm_refusal_and_correction_by_actual_usage(limiter: RateLimiter) -> None:
    scopes = [RateScope("key:k", RateLimits(tpm=1000))]
    first = await limiter.check_scopes(scopes, 600, now=T0)
    assert first.allowed and first.tokens is not None and first.tokens.remaining == 400
    refused = await limiter.check_scopes(scopes, 600, now=T0)
    assert not refused.allowed and refused.failed == "tokens"
    assert refused.retry_after_seconds == 12.0  # 200 tokens short at 1000 tokens / 60 s
    # the first request really used 100 tokens: 500 go back to the bucket
    await limiter.correct_tokens(first.scopes, first.estimated_tokens, 100, now=T0)
    again = await limiter.check_scopes(scopes, 600, now=T0)
    assert again.allowed and again.tokens is not None and again.tokens.remaining == 300


async def test_tpm_correction_upwards_leaves_the_scope_in_debt(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = RateLimits(tpm=1000)
    decision = await limiter.check(limits, "key:k", 100)
    await limiter.correct_tokens(decision.scopes, 100, 1300)  # 300 over the whole limit
    refused = await limiter.check(limits, "key:k", 1)
    assert not refused.allowed and refused.tokens is not None
    assert refused.tokens.remaining == 0
    assert refused.retry_after_seconds == 18.06  # 301 tokens to drain at 1000 / 60 s
    clock.now = T0 + 18.06
    assert (await limiter.check(limits, "key:k", 1)).allowed


async def test_request_larger_than_tpm_is_refused_without_retry_after(
    limiter: RateLimiter,
) -> None:
    decision = await limiter.check(RateLimits(rpm=10, tpm=1000), "key:k", 1001)
    assert not decision.allowed and decision.exceeds_limit
    assert decision.failed == "tokens" and decision.retry_after_seconds is None
    headers = decision.headers()
    assert "retry-after" not in headers
    assert headers["x-ratelimit-remaining-requests"] == "10"  # the refusal took nothing


async def test_refusal_by_one_scope_consumes_nothing_in_the_others(limiter: RateLimiter) -> None:
    scopes = [
        RateScope("key:k", RateLimits(rpm=10)),
        RateScope("user:alice", RateLimits(rpm=2)),
    ]
    for _ in range(2):
        assert (await limiter.check_scopes(scopes, 0)).allowed
    refused = await limiter.check_scopes(scopes, 0)
    assert not refused.allowed
    assert refused.failed_scope == "user:alice"
    assert refused.requests is not None and refused.requests.scope_id == "user:alice"
    key_only = await limiter.check(RateLimits(rpm=10), "key:k", 0)
    assert key_only.requests is not None and key_only.requests.remaining == 7


async def test_headers_report_the_tightest_scope(limiter: RateLimiter) -> None:
    scopes = [
        RateScope("key:k", RateLimits(rpm=100, tpm=5000)),
        RateScope("tag:search", RateLimits(rpm=10, tpm=100_000)),
    ]
    decision = await limiter.check_scopes(scopes, 1000)
    assert decision.requests is not None and decision.tokens is not None
    assert (decision.requests.scope_id, decision.requests.remaining) == ("tag:search", 9)
    assert (decision.tokens.scope_id, decision.tokens.remaining) == ("key:k", 4000)


async def test_no_limits_means_allowed_without_headers(
    limiter: RateLimiter, store: InMemoryStore
) -> None:
    decision = await limiter.check(RateLimits(), "key:k", 10**9)
    assert decision.allowed and decision.headers() == {}
    assert (await store.snapshot())["rate_buckets"] == []


async def test_concurrency_limit_and_release(limiter: RateLimiter, store: InMemoryStore) -> None:
    limits = RateLimits(concurrency=2)
    first = await limiter.check(limits, "key:k", 0)
    second = await limiter.check(limits, "key:k", 0)
    assert first.allowed and second.allowed and first.lease.held
    third = await limiter.check(limits, "key:k", 0)
    assert not third.allowed and third.failed == "concurrency"
    assert third.headers()["retry-after"] == "1"
    await first.lease.release()
    await first.lease.release()  # idempotent: the second call gives nothing back
    assert await in_flight(store) == {"concurrency:key:k": 1}
    fourth = await limiter.check(limits, "key:k", 0)
    assert fourth.allowed
    await second.lease.release()
    await fourth.lease.release()
    assert await in_flight(store) == {}


async def test_concurrency_refusal_does_not_spend_rpm(limiter: RateLimiter) -> None:
    limits = RateLimits(rpm=5, concurrency=1)
    async with limiter.admit([RateScope("key:k", limits)], 0) as held:
        assert held.allowed
        refused = await limiter.check(limits, "key:k", 0)
        assert not refused.allowed and refused.failed == "concurrency"
        assert refused.requests is not None and refused.requests.remaining == 4


async def test_concurrency_is_released_when_the_request_raises(
    limiter: RateLimiter, store: InMemoryStore
) -> None:
    scopes = [RateScope("key:k", RateLimits(concurrency=1))]
    with pytest.raises(RuntimeError, match="upstream blew up"):
        async with limiter.admit(scopes, 0) as decision:
            assert decision.allowed
            assert await in_flight(store) == {"concurrency:key:k": 1}
            raise RuntimeError("upstream blew up")
    assert await in_flight(store) == {}
    assert (await limiter.check_scopes(scopes, 0)).allowed


async def test_concurrency_is_released_when_the_request_is_cancelled(
    limiter: RateLimiter, store: InMemoryStore
) -> None:
    scopes = [RateScope("key:k", RateLimits(concurrency=1))]
    entered = asyncio.Event()

    async def request() -> None:
        async with limiter.admit(scopes, 0):
            entered.set()
            await asyncio.Event().wait()  # a stream that never ends

    task = asyncio.create_task(request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await in_flight(store) == {}


async def test_64_tasks_never_exceed_the_concurrency_limit(limiter: RateLimiter) -> None:
    scopes = [RateScope("key:k", RateLimits(concurrency=4))]
    running = peak = 0

    async def request() -> bool:
        nonlocal running, peak
        async with limiter.admit(scopes, 0) as decision:
            if not decision.allowed:
                return False
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            return True

    admitted = await asyncio.gather(*(request() for _ in range(64)))
    assert peak <= 4 and 4 <= sum(admitted) < 64


async def test_duplicate_scopes_count_once(limiter: RateLimiter) -> None:
    scope = RateScope("key:k", RateLimits(rpm=3))
    decision = await limiter.check_scopes([scope, scope], 0)
    assert decision.requests is not None and decision.requests.remaining == 2


async def test_negative_estimate_is_rejected(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.check(RateLimits(tpm=10), "key:k", -1)


async def test_an_empty_lease_is_a_no_op() -> None:
    async with ConcurrencyLease() as lease:
        assert not lease.held


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
