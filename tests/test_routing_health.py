"""The per-deployment health registry with an injected clock: breaker, cooling, latency."""

from __future__ import annotations

from routerd.config.model import BreakerConfig
from routerd.routing.health import HealthRegistry, Refusal, State

KEY = ("a", "http://a", "a-model")
CONFIG = BreakerConfig(failures=3, error_rate=0.5, window=10.0, min_requests=4, cooldown=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry() -> tuple[HealthRegistry, Clock, list[tuple[str, State]]]:
    clock = Clock()
    changes: list[tuple[str, State]] = []
    health = HealthRegistry(clock, on_state=lambda key, state: changes.append((key[0], state)))
    return health, clock, changes


def fail(health: HealthRegistry, n: int = 1, retry_after: float | None = None) -> None:
    for _ in range(n):
        assert health.acquire(KEY, CONFIG) is None
        health.failed(KEY, CONFIG, retry_after)


def succeed(health: HealthRegistry, n: int = 1, latency: float = 0.1) -> None:
    for _ in range(n):
        assert health.acquire(KEY, CONFIG) is None
        health.succeeded(KEY, CONFIG, latency)


def test_opens_after_consecutive_failures_and_recovers_through_one_probe() -> None:
    health, clock, changes = registry()
    fail(health, 2)
    assert health.refusal(KEY, CONFIG) is None
    fail(health)
    assert health.refusal(KEY, CONFIG) is Refusal.open
    assert health.acquire(KEY, CONFIG) is Refusal.open
    assert health.retry_in(KEY, CONFIG) == 5.0
    clock.now += 5.0
    assert health.acquire(KEY, CONFIG) is None  # the probe
    assert health.acquire(KEY, CONFIG) is Refusal.probing  # only one
    health.succeeded(KEY, CONFIG, 0.2)
    assert health.refusal(KEY, CONFIG) is None
    assert changes == [("a", State.open), ("a", State.half_open), ("a", State.closed)]


def test_a_failed_probe_reopens_for_a_new_cooldown() -> None:
    health, clock, _ = registry()
    fail(health, 3)
    clock.now += 5.0
    fail(health)
    assert health.snapshot(KEY, CONFIG)["state"] == "open"
    clock.now += 4.9
    assert health.refusal(KEY, CONFIG) is Refusal.open
    clock.now += 0.1
    assert health.refusal(KEY, CONFIG) is None


def test_a_probe_without_a_verdict_gives_the_probe_back() -> None:
    health, clock, _ = registry()
    fail(health, 3)
    clock.now += 5.0
    assert health.acquire(KEY, CONFIG) is None
    health.released(KEY)
    assert health.acquire(KEY, CONFIG) is None


def test_opens_on_error_rate_over_the_window() -> None:
    health, _, _ = registry()
    for _ in range(2):  # alternate so consecutive failures never reach 3
        succeed(health)
        fail(health)
    assert health.refusal(KEY, CONFIG) is Refusal.open  # 2 of 4 failed: 50%


def test_old_failures_leave_the_window() -> None:
    health, clock, _ = registry()
    fail(health, 2)
    succeed(health)
    clock.now += 11.0
    succeed(health, 2)
    fail(health)
    assert health.snapshot(KEY, CONFIG)["window_attempts"] == 3
    assert health.refusal(KEY, CONFIG) is None  # 1 of 3 in the window, under min_requests


def test_retry_after_cools_the_deployment_capped() -> None:
    health, clock, _ = registry()
    fail(health, 1, retry_after=2.0)
    assert health.refusal(KEY, CONFIG) is Refusal.cooling
    assert health.retry_in(KEY, CONFIG) == 2.0
    clock.now += 2.0
    assert health.refusal(KEY, CONFIG) is None
    fail(health, 1, retry_after=3600.0)
    assert health.retry_in(KEY, CONFIG) == 60.0


def test_snapshot_latency_percentiles_ewma_and_in_flight() -> None:
    health, _, _ = registry()
    for ms in range(1, 101):
        succeed(health, latency=ms / 1000)
    health.observe_ttft(KEY, 0.1)
    health.observe_ttft(KEY, 0.2)
    assert health.acquire(KEY, CONFIG) is None
    snap = health.snapshot(KEY, CONFIG)
    assert snap["p50_ms"] == 51.0
    assert snap["p95_ms"] == 96.0
    assert snap["ewma_ttft_ms"] == 130.0  # 0.3 * 200 + 0.7 * 100
    assert snap["in_flight"] == 1
    assert snap["error_rate"] == 0.0
    ttft = health.ttft(KEY)
    assert ttft is not None and abs(ttft - 0.13) < 1e-9
