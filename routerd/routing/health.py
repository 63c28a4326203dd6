"""Health of each upstream deployment: circuit breaker, Retry-After cooling, latency, in-flight.

One `DeploymentHealth` per deployment key (provider name, base URL, upstream model), held by a
`HealthRegistry` that the Gateway owns, outside the routing table, so the state of a deployment
survives reloads while its key is unchanged (a new base URL is a new deployment). No network and
an injected clock: every transition is a plain method call, unit-tested without a server; each
breaker transition is logged (`deployment_state`) and reported to the `on_state` listener.

Breaker: closed -> open after `failures` consecutive failures, or when at least `min_requests`
attempts of the last `window` seconds failed at `error_rate` or more; open -> half-open once
`cooldown` has passed, letting exactly one probe through; the probe's success closes the
breaker (and forgets the window), its failure reopens it. A `Retry-After` from the upstream
cools the deployment (no new attempts) for that long, at most `MAX_COOLING` seconds.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from routerd.config.model import BreakerConfig

log = structlog.get_logger("routerd.health")

DeploymentKey = tuple[str, str, str]
MAX_COOLING = 60.0
_BUCKETS = 10
_LATENCY_SAMPLES = 256
_EWMA_ALPHA = 0.3


class State(enum.IntEnum):
    """Breaker states; the value is what `routerd_deployment_state` exports."""

    closed = 0
    half_open = 1
    open = 2


class Refusal(enum.Enum):
    """Why a deployment takes no attempt right now."""

    open = "open"
    probing = "probing"
    cooling = "cooling"


@dataclass(slots=True)
class _Window:
    """Attempts and failures of the last `window` seconds, in `_BUCKETS` time buckets."""

    buckets: deque[list[float]] = field(default_factory=deque)  # [start, total, failed]

    def add(self, now: float, window: float, failed: bool) -> None:
        width = window / _BUCKETS
        while self.buckets and self.buckets[0][0] <= now - window:
            self.buckets.popleft()
        if not self.buckets or self.buckets[-1][0] + width <= now:
            self.buckets.append([now, 0.0, 0.0])
        bucket = self.buckets[-1]
        bucket[1] += 1
        bucket[2] += failed

    def counts(self, now: float, window: float) -> tuple[int, int]:
        live = [b for b in self.buckets if b[0] > now - window]
        return int(sum(b[1] for b in live)), int(sum(b[2] for b in live))


@dataclass(slots=True)
class DeploymentHealth:
    state: State = State.closed
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probe_out: bool = False
    cooling_until: float = 0.0
    in_flight: int = 0
    ewma_ttft: float | None = None
    window: _Window = field(default_factory=_Window)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))


StateListener = Callable[[DeploymentKey, State], None]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HealthRegistry:
    """Every deployment's health, keyed by `DeploymentKey`; created on first use."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_state: StateListener | None = None,
    ) -> None:
        self._clock = clock
        self._on_state = on_state
        self._deployments: dict[DeploymentKey, DeploymentHealth] = {}

    def get(self, key: DeploymentKey) -> DeploymentHealth:
        health = self._deployments.get(key)
        if health is None:
            health = self._deployments[key] = DeploymentHealth()
        return health

    def _set(self, key: DeploymentKey, health: DeploymentHealth, state: State) -> None:
        if health.state is not state:
            health.state = state
            log.warning(
                "deployment_state", provider=key[0], upstream_model=key[2], state=state.name
            )
            if self._on_state is not None:
                self._on_state(key, state)

    # -- asking -------------------------------------------------------------------------------

    def refusal(self, key: DeploymentKey, config: BreakerConfig) -> Refusal | None:
        """Why `key` would take no attempt now, or None when it would (no side effect)."""
        health = self._deployments.get(key)
        if health is None:
            return None
        now = self._clock()
        if health.cooling_until > now:
            return Refusal.cooling
        if health.state is State.open and now - health.opened_at < config.cooldown:
            return Refusal.open
        if health.state is not State.closed and health.probe_out:
            return Refusal.probing
        return None

    def retry_in(self, key: DeploymentKey, config: BreakerConfig) -> float:
        """Seconds until `key` takes attempts again (0 when it does now)."""
        health = self.get(key)
        now = self._clock()
        wait = health.cooling_until - now
        if health.state is State.open:
            wait = max(wait, health.opened_at + config.cooldown - now)
        return max(wait, 0.0)

    def acquire(self, key: DeploymentKey, config: BreakerConfig) -> Refusal | None:
        """Start an attempt on `key` unless it is refused; a half-open breaker admits one probe."""
        refused = self.refusal(key, config)
        if refused is not None:
            return refused
        health = self.get(key)
        if health.state is State.open:
            self._set(key, health, State.half_open)
        if health.state is State.half_open:
            health.probe_out = True
        health.in_flight += 1
        return None

    # -- outcomes -----------------------------------------------------------------------------

    def succeeded(self, key: DeploymentKey, config: BreakerConfig, latency: float) -> None:
        health = self.get(key)
        health.in_flight = max(health.in_flight - 1, 0)
        health.consecutive_failures = 0
        health.latencies.append(latency)
        if health.state is not State.closed:
            health.probe_out = False
            health.window = _Window()
            self._set(key, health, State.closed)
        else:
            health.window.add(self._clock(), config.window, failed=False)

    def failed(
        self, key: DeploymentKey, config: BreakerConfig, retry_after: float | None = None
    ) -> None:
        health = self.get(key)
        now = self._clock()
        health.in_flight = max(health.in_flight - 1, 0)
        health.consecutive_failures += 1
        health.window.add(now, config.window, failed=True)
        if retry_after:
            health.cooling_until = max(health.cooling_until, now + min(retry_after, MAX_COOLING))
        total, bad = health.window.counts(now, config.window)
        tripped = health.consecutive_failures >= config.failures or (
            total >= config.min_requests and bad / total >= config.error_rate
        )
        if health.state is State.half_open or tripped:
            health.probe_out = False
            health.opened_at = now
            self._set(key, health, State.open)

    def released(self, key: DeploymentKey) -> None:
        """An attempt ended with no verdict on the deployment (the request's own fault, or the
        client went away): only the in-flight count and a held probe are given back."""
        health = self.get(key)
        health.in_flight = max(health.in_flight - 1, 0)
        health.probe_out = False

    def observe_ttft(self, key: DeploymentKey, seconds: float) -> None:
        health = self.get(key)
        previous = health.ewma_ttft
        health.ewma_ttft = (
            seconds if previous is None else _EWMA_ALPHA * seconds + (1 - _EWMA_ALPHA) * previous
        )

    # -- reading ------------------------------------------------------------------------------

    def ttft(self, key: DeploymentKey) -> float | None:
        health = self._deployments.get(key)
        return health.ewma_ttft if health is not None else None

    def snapshot(self, key: DeploymentKey, config: BreakerConfig) -> dict[str, Any]:
        """The numbers `GET /health/providers` shows for one deployment."""
        health = self.get(key)
        now = self._clock()
        total, bad = health.window.counts(now, config.window)
        latencies = list(health.latencies)
        state = health.state
        if state is State.open and now - health.opened_at >= config.cooldown:
            state = State.half_open
        p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
        return {
            "state": state.name,
            "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
            "ewma_ttft_ms": round(health.ewma_ttft * 1000, 1) if health.ewma_ttft else None,
            "error_rate": round(bad / total, 4) if total else 0.0,
            "window_attempts": total,
            "consecutive_failures": health.consecutive_failures,
            "in_flight": health.in_flight,
            "cooling_seconds": round(max(health.cooling_until - now, 0.0), 3),
        }
