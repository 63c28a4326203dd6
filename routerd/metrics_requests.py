"""The per-request Prometheus series as plain numbers, turned into metric families at scrape.

Owns `routerd_requests_total`, `routerd_request_duration_seconds`, `routerd_upstream_ttft_seconds`,
`routerd_tokens_total` and `routerd_cost_usd_total`. The request path only adds to ints, floats
and lists (no prometheus_client child, no mutex); `collect` builds exactly the samples the stock
`Counter` / `Histogram` would (same names, labels, float values, cumulative buckets, `_created`
per series unless prometheus_client's created series are disabled), in the same order.

Thread-safety: every update and every scrape runs on the event loop thread (`/metrics` is an
aiohttp handler that renders synchronously), so nothing interleaves. `collect` still copies each
dict before iterating, so a scrape from another thread would at worst read a count one behind.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["DURATION_BUCKETS", "TOKEN_TYPES", "RequestSeries"]

#: Latency buckets for LLM calls: from a cache hit (5 ms) to a long generation (5 min).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

#: Values of the `type` label of `routerd_tokens_total`.
TOKEN_TYPES: tuple[str, ...] = ("prompt", "completion", "cached", "cache_write", "reasoning")

_PICO_PER_USD = 10**12
_LE = (*(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf")  # type: ignore[no-untyped-call]

_REQUESTS = ("routerd_requests", "Requests answered, by ingress format, catalog model, provider "
             "and HTTP status.")  # fmt: skip
_DURATION = ("routerd_request_duration_seconds", "Time from request received to response "
             "finished, by ingress format.")  # fmt: skip
_TTFT = ("routerd_upstream_ttft_seconds", "Time from upstream request sent to first upstream "
         "token, by provider.")  # fmt: skip
_TOKENS = ("routerd_tokens", "Tokens metered, by type (prompt, completion, cached, cache_write, "
           "reasoning).")  # fmt: skip
_COST = ("routerd_cost_usd", "Metered cost of requests in US dollars.")


def _use_created() -> bool:
    """prometheus_client's switch for `_created` series (env PROMETHEUS_DISABLE_CREATED_SERIES)."""
    return bool(getattr(_prometheus_metrics, "_use_created", True))


class Histogram:
    """One histogram series: per-bucket (not cumulative) counts, the sum, the creation time.

    A value counts in the first bucket whose bound is >= value (Prometheus `le`):
    `counts[bisect_left(DURATION_BUCKETS, value)]`, the last one being +Inf.
    """

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()


class RequestSeries(Collector):
    """The per-request counters and histograms; `Metrics.observe_request` feeds them."""

    def __init__(self) -> None:
        # (ingress, model, provider, status) -> [count, created]
        self.requests: dict[tuple[str, str, str, int], list[float]] = {}
        self.durations: dict[str, Histogram] = {}  # by ingress
        self.ttfts: dict[str, Histogram] = {}  # by provider
        self.tokens = [0] * len(TOKEN_TYPES)  # in TOKEN_TYPES order
        self.tokens_created = [time.time() for _ in TOKEN_TYPES]
        self.cost_pico = 0

    def observe(
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
        """Record one finished request (see `Metrics.observe_request`)."""
        key = (ingress, model, provider, status)
        series = self.requests.get(key)
        if series is None:
            series = self.requests[key] = [0, time.time()]
        series[0] += 1
        hist = self.durations.get(ingress)
        if hist is None:
            hist = self.durations[ingress] = Histogram()
        hist.counts[bisect_left(DURATION_BUCKETS, duration_s)] += 1
        hist.sum += duration_s
        if ttft_s is not None:
            hist = self.ttfts.get(provider)
            if hist is None:
                hist = self.ttfts[provider] = Histogram()
            hist.counts[bisect_left(DURATION_BUCKETS, ttft_s)] += 1
            hist.sum += ttft_s
        tokens = self.tokens
        if prompt_tokens > 0:
            tokens[0] += prompt_tokens
        if completion_tokens > 0:
            tokens[1] += completion_tokens
        if cached_tokens > 0:
            tokens[2] += cached_tokens
        if cache_write_tokens > 0:
            tokens[3] += cache_write_tokens
        if reasoning_tokens > 0:
            tokens[4] += reasoning_tokens
        if cost_pico > 0:
            self.cost_pico += cost_pico

    def describe(self) -> Iterator[Metric]:
        yield Metric(*_REQUESTS, "counter")
        yield Metric(*_DURATION, "histogram")
        yield Metric(*_TTFT, "histogram")
        yield Metric(*_TOKENS, "counter")
        yield Metric(*_COST, "counter")

    def collect(self) -> Iterator[Metric]:
        created = _use_created()
        yield self._requests_family(created)
        yield _histogram_family(_DURATION, "ingress", self.durations, created)
        yield _histogram_family(_TTFT, "provider", self.ttfts, created)
        tokens = Metric(*_TOKENS, "counter")
        for name, count, since in zip(TOKEN_TYPES, self.tokens, self.tokens_created, strict=True):
            tokens.add_sample("routerd_tokens_total", {"type": name}, float(count))
            if created:
                tokens.add_sample("routerd_tokens_created", {"type": name}, since)
        yield tokens
        cost = Metric(*_COST, "counter")
        cost.add_sample("routerd_cost_usd_total", {}, self.cost_pico / _PICO_PER_USD)
        yield cost

    def _requests_family(self, created: bool) -> Metric:
        family = Metric(*_REQUESTS, "counter")
        for (ingress, model, provider, status), (count, since) in list(self.requests.items()):
            labels = {"ingress": ingress, "model": model, "provider": provider, "code": str(status)}
            family.add_sample("routerd_requests_total", labels, float(count))
            if created:
                family.add_sample("routerd_requests_created", labels, since)
        return family


def _histogram_family(
    meta: tuple[str, str], label: str, series: dict[str, Histogram], created: bool
) -> Metric:
    name = meta[0]
    family = Metric(*meta, "histogram")
    for value, hist in list(series.items()):
        acc = 0.0
        for le, count in zip(_LE, list(hist.counts), strict=True):
            acc += count
            family.add_sample(name + "_bucket", {label: value, "le": le}, acc)
        family.add_sample(name + "_count", {label: value}, acc)
        family.add_sample(name + "_sum", {label: value}, hist.sum)
        if created:
            family.add_sample(name + "_created", {label: value}, hist.created)
    return family
