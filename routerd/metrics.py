"""Every Prometheus collector routerd exports, in one place.

`Metrics` is created once per process and outlives config reloads. It owns its own
`CollectorRegistry` (never the global one), so tests and embedders can build as many as they
like. Label sets are bounded: model and provider come from the catalog ("" when unknown), never
from keys or users. The per-request series (requests, durations, TTFT, tokens, cost) are plain
numbers in `metrics_requests.RequestSeries`, turned into families only when scraped: the request
path takes no lock. The other methods cache label children in dicts keyed by label tuples.

The cost counter is kept as an integer count of picodollars and converted to USD only when
scraped, so it sums exactly (one rounding per scrape, none per request).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from routerd.metering.budgets import BudgetRule
from routerd.metrics_requests import DURATION_BUCKETS, TOKEN_TYPES, RequestSeries

__all__ = ["DURATION_BUCKETS", "TOKEN_TYPES", "Metrics"]

_PICO_PER_USD = 10**12


MAX_DROPPED_FIELD_LABELS = 64


class Metrics:
    """The process-wide set of collectors and the cheap methods that update them."""

    def __init__(self) -> None:
        self._dropped_names: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._series = RequestSeries()  # requests, durations, TTFT, tokens, cost
        r.register(self._series)
        #: Record one finished request (call once, after the response is complete):
        #: (ingress, model, provider, status, duration_s, ttft_s, prompt_tokens,
        #: completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_pico).
        #: The series' own method, bound here: no wrapper call on the request path.
        self.observe_request = self._series.observe
        self.in_flight = Gauge(
            "routerd_in_flight_requests",
            "Requests currently being handled.",
            registry=r,
        )
        # in-flight gauges are plain ints read at scrape time (no lock per request)
        self._in_flight_count = 0
        self.in_flight.set_function(lambda: self._in_flight_count)
        self.config_reloads = Counter(
            "routerd_config_reloads",
            "Configuration reload attempts, by result (success or error).",
            ("result",),
            registry=r,
        )
        self.config_generation = Gauge(
            "routerd_config_generation",
            "Generation number of the configuration currently in effect.",
            registry=r,
        )
        self.config_last_reload_success = Gauge(
            "routerd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            registry=r,
        )
        self.journal_records = Counter(
            "routerd_journal_records",
            "Usage journal records written.",
            registry=r,
        )
        self.journal_errors = Counter(
            "routerd_journal_errors",
            "Usage journal write failures.",
            registry=r,
        )
        self.dropped_fields_counter = Counter(
            "routerd_dropped_fields",
            "Request fields dropped in format translation, by ingress format and field.",
            ("ingress", "field"),
            registry=r,
        )
        self.budget_spend = Gauge(
            "routerd_budget_spend_usd",
            "Settled spend in the current window of each budget (refreshed at scrape).",
            ("budget",),
            registry=r,
        )
        self.budget_limit = Gauge(
            "routerd_budget_limit_usd", "Limit of each budget.", ("budget",), registry=r
        )
        self.rate_limited_counter = Counter(
            "routerd_rate_limited",
            "Requests refused by a rate limit, by the kind of scope that refused (key, user, tag).",
            ("scope",),
            registry=r,
        )
        self.budget_rejections = Counter(
            "routerd_budget_rejections",
            "Requests refused because a budget had no room, by budget.",
            ("budget",),
            registry=r,
        )
        self._budget_ids: set[str] = set()

        # Pre-create the small fixed label sets; the rest are cached on first use.
        self._reload_ok = self.config_reloads.labels("success")
        self._reload_error = self.config_reloads.labels("error")
        self._dropped_children: dict[tuple[str, str], Counter] = {}
        self._init_routing()

    # -- requests ---------------------------------------------------------------------------

    def request_started(self) -> None:
        """A request entered the server (pair with `request_finished`)."""
        self._in_flight_count += 1

    def request_finished(self) -> None:
        """A request left the server, however it ended."""
        self._in_flight_count -= 1

    # -- config -----------------------------------------------------------------------------

    def config_reloaded(self, ok: bool, generation: int | None) -> None:
        """Record a config load attempt; on success, the generation now in effect."""
        if ok:
            self._reload_ok.inc()
            if generation is not None:
                self.config_generation.set(generation)
            self.config_last_reload_success.set(time.time())
        else:
            self._reload_error.inc()

    # -- journal ----------------------------------------------------------------------------

    def journal_written(self, n: int) -> None:
        """`n` usage records reached the journal."""
        if n:
            self.journal_records.inc(n)

    def journal_error(self, exc: BaseException) -> None:
        """A journal write failed (the exception is logged elsewhere, not labelled here)."""
        del exc
        self.journal_errors.inc()

    # -- translation ------------------------------------------------------------------------

    def dropped_fields(self, ingress: str, fields: Iterable[str]) -> None:
        """Count request fields the translation to the provider's format had to drop.

        Field names come from client bodies (unknown top-level fields are dropped too), so the
        label set is capped: the first MAX_DROPPED_FIELD_LABELS distinct names keep their own
        series (truncated to 64 characters), every later one counts as "other".
        """
        for name in fields:
            field = name[:64]
            if field not in self._dropped_names:
                if len(self._dropped_names) >= MAX_DROPPED_FIELD_LABELS:
                    field = "other"
                else:
                    self._dropped_names.add(field)
            key = (ingress, field)
            child = self._dropped_children.get(key)
            if child is None:
                child = self._dropped_children[key] = self.dropped_fields_counter.labels(
                    ingress, field
                )
            child.inc()

    # -- budgets and rate limits -------------------------------------------------------------

    def budgets_configured(self, rules: Iterable[BudgetRule]) -> None:
        """The budgets of the table now serving: limits set, removed budgets' series dropped."""
        ids = set()
        for rule in rules:
            ids.add(rule.id)
            self.budget_limit.labels(rule.id).set(rule.limit_pico / _PICO_PER_USD)
        for gone in self._budget_ids - ids:
            self.budget_limit.remove(gone)
            self.budget_spend.remove(gone)
            self.budget_rejections.remove(gone)
        for new in ids - self._budget_ids:
            self.budget_spend.labels(new).set(0)
        self._budget_ids = ids

    def budget_spent(self, budget_id: str, pico: int) -> None:
        if budget_id in self._budget_ids:
            self.budget_spend.labels(budget_id).set(pico / _PICO_PER_USD)

    def budget_rejected(self, budget_id: str) -> None:
        self.budget_rejections.labels(budget_id).inc()

    def rate_limited(self, scope: str) -> None:
        self.rate_limited_counter.labels(scope).inc()

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every collector and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- routing ------------------------------------------------------------------------------
    # Label sets are bounded by the catalog (provider, model) and the error taxonomy (outcome);
    # children are cached by label tuple.

    def _init_routing(self) -> None:
        r = self.registry
        self.upstream_attempts = Counter(
            "routerd_upstream_attempts",
            "Attempts sent to upstream deployments, by provider, catalog model and outcome "
            "(ok, an error code, cancelled, client_closed).",
            ("provider", "model", "outcome"),
            registry=r,
        )
        self.fallbacks = Counter(
            "routerd_fallbacks",
            "Requests answered by a fallback model instead of the requested one.",
            ("from_model", "to_model"),
            registry=r,
        )
        self.deployment_state_gauge = Gauge(
            "routerd_deployment_state",
            "Circuit breaker state per deployment (upstream model): 0 closed, 1 half-open, 2 open.",
            ("provider", "model"),
            registry=r,
        )
        self.upstream_inflight_gauge = Gauge(
            "routerd_upstream_inflight",
            "Attempts currently waiting on or streaming from an upstream, by provider.",
            ("provider",),
            registry=r,
        )
        self._routing_children: dict[tuple[int, tuple[str, ...]], Counter | Gauge] = {}
        self._upstream_inflight_counts: dict[str, list[int]] = {}

    def _child(self, family: Counter | Gauge, *labels: str) -> Counter | Gauge:
        key = (id(family), labels)
        child = self._routing_children.get(key)
        if child is None:
            child = self._routing_children[key] = family.labels(*labels)
        return child

    def upstream_attempt(self, provider: str, model: str, outcome: str) -> None:
        self._child(self.upstream_attempts, provider, model, outcome).inc()

    def fallback(self, from_model: str, to_model: str) -> None:
        self._child(self.fallbacks, from_model, to_model).inc()

    def deployment_state(self, key: tuple[str, str, str], state: int) -> None:
        """A deployment's breaker changed state; `key` is (provider, base URL, upstream model)."""
        gauge = self._child(self.deployment_state_gauge, key[0], key[2])
        assert isinstance(gauge, Gauge)
        gauge.set(state)

    def upstream_inflight(self, provider: str, delta: int) -> None:
        counts = self._upstream_inflight_counts
        count = counts.get(provider)
        if count is None:
            count = counts[provider] = [0]
            gauge = self.upstream_inflight_gauge.labels(provider)
            gauge.set_function(lambda: count[0])
        count[0] += delta
