"""The per-request metrics as routerd exported them with stock prometheus_client objects.

This is the implementation `routerd.metrics_requests.RequestSeries` replaced (a `Counter` and two
`Histogram`s with label children, a token `Counter`, the exact picodollar cost collector), kept
as the reference the tests compare the scrape output against.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from routerd.metrics import DURATION_BUCKETS, TOKEN_TYPES

REQUEST_FAMILIES = (
    "routerd_requests",
    "routerd_request_duration_seconds",
    "routerd_upstream_ttft_seconds",
    "routerd_tokens",
    "routerd_cost_usd",
)


class _Cost(Collector):
    def __init__(self) -> None:
        self.pico = 0

    def collect(self) -> Iterator[Metric]:
        doc = "Metered cost of requests in US dollars."
        yield CounterMetricFamily("routerd_cost_usd", doc, value=self.pico / 10**12)


class ReferenceRequestMetrics:
    """Stock prometheus_client collectors, fed like `Metrics.observe_request` was."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "routerd_requests",
            "Requests answered, by ingress format, catalog model, provider and HTTP status.",
            ("ingress", "model", "provider", "code"),
            registry=r,
        )
        self.duration = Histogram(
            "routerd_request_duration_seconds",
            "Time from request received to response finished, by ingress format.",
            ("ingress",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "routerd_upstream_ttft_seconds",
            "Time from upstream request sent to first upstream token, by provider.",
            ("provider",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "routerd_tokens",
            "Tokens metered, by type (prompt, completion, cached, cache_write, reasoning).",
            ("type",),
            registry=r,
        )
        self.cost = _Cost()
        r.register(self.cost)
        for name in TOKEN_TYPES:
            self.tokens.labels(name)

    def observe_request(
        self,
        ingress: str,
        model: str,
        provider: str,
        status: int,
        duration_s: float,
        ttft_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
        cost_pico: int,
    ) -> None:
        self.requests.labels(ingress, model, provider, str(status)).inc()
        self.duration.labels(ingress).observe(duration_s)
        if ttft_s is not None:
            self.ttft.labels(provider).observe(ttft_s)
        counts = (prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens)
        for name, n in zip(TOKEN_TYPES, (*counts, reasoning_tokens), strict=True):
            if n:
                self.tokens.labels(name).inc(n)
        if cost_pico > 0:
            self.cost.pico += cost_pico

    def text(self) -> str:
        return generate_latest(self.registry).decode()


_CREATED = re.compile(r"^(\w+_created(?:\{[^}]*\})?) \S+$", re.MULTILINE)


def without_created_values(text: str) -> str:
    """The exposition text with every `_created` value (a creation time) replaced by `T`."""
    return _CREATED.sub(r"\1 T", text)


def request_families(text: str) -> str:
    """The part of a routerd scrape that the per-request series make: from `routerd_requests`
    up to the family that follows `routerd_cost_usd` (they are registered together, first)."""
    start = text.index("# HELP routerd_requests_total ")
    end = text.index("\n", text.index("\nrouterd_cost_usd_total ") + 1) + 1
    return text[start:end]
