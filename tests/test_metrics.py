"""Tests for routerd.metrics: rendered exposition text after a few observations."""

from __future__ import annotations

import random
import re
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    disable_created_metrics,
    enable_created_metrics,
)

from routerd.metrics import Metrics
from tests.metrics_reference import (
    ReferenceRequestMetrics,
    request_families,
    without_created_values,
)


def _observe(m: Metrics, **overrides: object) -> None:
    kwargs: dict[str, object] = {
        "ingress": "chat_completions",
        "model": "echo/echo-1",
        "provider": "echo",
        "status": 200,
        "duration_s": 0.2,
        "ttft_s": 0.05,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_pico": 0,
    }
    kwargs.update(overrides)
    m.observe_request(**kwargs)  # type: ignore[arg-type]


def _text(m: Metrics) -> str:
    body, ctype = m.render()
    assert ctype == CONTENT_TYPE_LATEST
    return body.decode()


def test_requests_tokens_and_histograms() -> None:
    m = Metrics()
    _observe(m)
    _observe(m, duration_s=3.0, cached_tokens=4, reasoning_tokens=2)
    _observe(m, status=502, provider="echo", ttft_s=None, prompt_tokens=0, completion_tokens=0)
    text = _text(m)

    assert (
        'routerd_requests_total{code="200",ingress="chat_completions",'
        'model="echo/echo-1",provider="echo"} 2.0'
    ) in text
    assert (
        'routerd_requests_total{code="502",ingress="chat_completions",'
        'model="echo/echo-1",provider="echo"} 1.0'
    ) in text
    assert 'routerd_tokens_total{type="prompt"} 20.0' in text
    assert 'routerd_tokens_total{type="completion"} 10.0' in text
    assert 'routerd_tokens_total{type="cached"} 4.0' in text
    assert 'routerd_tokens_total{type="reasoning"} 2.0' in text
    assert 'routerd_tokens_total{type="cache_write"} 0.0' in text

    assert 'routerd_request_duration_seconds_count{ingress="chat_completions"} 3.0' in text
    assert 'routerd_request_duration_seconds_sum{ingress="chat_completions"} 3.4' in text
    assert 'routerd_request_duration_seconds_bucket{ingress="chat_completions",le="0.25"} 2.0' in (
        text
    )
    assert 'routerd_request_duration_seconds_bucket{ingress="chat_completions",le="300.0"} 3.0' in (
        text
    )
    # TTFT only for the two requests that reported one.
    assert 'routerd_upstream_ttft_seconds_count{provider="echo"} 2.0' in text


def test_unknown_model_uses_empty_label() -> None:
    m = Metrics()
    _observe(m, model="", provider="", status=404, ttft_s=None)
    text = _text(m)
    assert (
        'routerd_requests_total{code="404",ingress="chat_completions",model="",provider=""} 1.0'
        in (text)
    )


def test_cost_sums_exactly() -> None:
    m = Metrics()
    # 0.1 + 0.2 USD would be 0.30000000000000004 as float additions.
    _observe(m, cost_pico=100_000_000_000)
    _observe(m, cost_pico=200_000_000_000)
    _observe(m, cost_pico=0)
    assert "routerd_cost_usd_total 0.3\n" in _text(m)
    for _ in range(10):
        _observe(m, cost_pico=1)  # one picodollar each
    assert "routerd_cost_usd_total 0.30000000001\n" in _text(m)


def test_in_flight_gauge() -> None:
    m = Metrics()
    assert "routerd_in_flight_requests 0.0\n" in _text(m)
    m.request_started()
    m.request_started()
    assert "routerd_in_flight_requests 2.0\n" in _text(m)
    m.request_finished()
    assert "routerd_in_flight_requests 1.0\n" in _text(m)
    m.request_finished()
    assert "routerd_in_flight_requests 0.0\n" in _text(m)


def test_config_reloads() -> None:
    m = Metrics()
    m.config_reloaded(True, 1)
    m.config_reloaded(False, None)
    m.config_reloaded(True, 2)
    text = _text(m)
    assert 'routerd_config_reloads_total{result="success"} 2.0' in text
    assert 'routerd_config_reloads_total{result="error"} 1.0' in text
    assert "routerd_config_generation 2.0\n" in text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("routerd_config_last_reload_success_timestamp_seconds ")
    )
    assert float(line.split()[1]) > 1.6e9


def test_journal_and_dropped_fields() -> None:
    m = Metrics()
    m.journal_written(3)
    m.journal_written(0)
    m.journal_error(OSError("disk full"))
    m.dropped_fields("messages", ["logit_bias", "seed"])
    m.dropped_fields("messages", ["seed"])
    m.dropped_fields("messages", [])
    text = _text(m)
    assert "routerd_journal_records_total 3.0\n" in text
    assert "routerd_journal_errors_total 1.0\n" in text
    assert 'routerd_dropped_fields_total{field="seed",ingress="messages"} 2.0' in text
    assert 'routerd_dropped_fields_total{field="logit_bias",ingress="messages"} 1.0' in text


def test_own_registry_and_independent_instances() -> None:
    a = Metrics()
    b = Metrics()  # would raise "Duplicated timeseries" if the global registry were used
    a.request_started()
    assert "routerd_in_flight_requests 0.0\n" in _text(b)
    assert REGISTRY.get_sample_value("routerd_in_flight_requests") is None


def test_dropped_field_labels_are_capped() -> None:
    from routerd.metrics import MAX_DROPPED_FIELD_LABELS

    m = Metrics()
    m.dropped_fields("messages", [f"client_field_{i}" for i in range(200)])
    text = m.render()[0].decode()
    series = [
        line for line in text.splitlines() if line.startswith("routerd_dropped_fields_total{")
    ]
    assert len(series) == MAX_DROPPED_FIELD_LABELS + 1
    other = next(line for line in series if 'field="other"' in line)
    assert other.endswith(f" {200 - MAX_DROPPED_FIELD_LABELS}.0")


def _random_observations(seed: int, n: int) -> list[tuple[object, ...]]:
    rnd = random.Random(seed)
    durations = [0.0, 0.0049, 0.005, 0.25, 1.0, 299.0, 300.0, 301.0, 4000.0]
    out: list[tuple[object, ...]] = []
    for _ in range(n):
        out.append(
            (
                rnd.choice(["chat_completions", "messages", "responses", "embeddings"]),
                rnd.choice(["", "fake/gpt-test", "echo/echo-1"]),
                rnd.choice(["", "fake", "echo"]),
                rnd.choice([200, 400, 429, 499, 502]),
                rnd.choice([*durations, rnd.random() * 5]),
                rnd.choice([None, 0.005, rnd.random()]),
                rnd.randint(0, 3000),
                rnd.choice([0, rnd.randint(1, 500)]),
                rnd.choice([0, 7]),
                rnd.choice([0, 3]),
                rnd.choice([0, 11]),
                rnd.choice([0, 1, 68_800_000, 10**12 + 5]),
            )
        )
    return out


def _request_text(m: Metrics) -> str:
    return without_created_values(request_families(_text(m)))


def test_request_series_render_exactly_as_stock_prometheus_client() -> None:
    m, ref = Metrics(), ReferenceRequestMetrics()
    assert _request_text(m) == without_created_values(ref.text())  # before any request
    for args in _random_observations(7, 2000):
        m.observe_request(*args)  # type: ignore[arg-type]
        ref.observe_request(*args)  # type: ignore[arg-type]
    text = _request_text(m)
    assert text == without_created_values(ref.text())
    assert 'routerd_requests_created{code="499",' in text
    assert 'routerd_request_duration_seconds_bucket{ingress="messages",le="+Inf"}' in text
    created = [
        float(line.split()[-1])
        for line in _text(m).splitlines()
        if re.match(r"routerd_(requests|request_duration_seconds|tokens)_created\{", line)
    ]
    assert created and all(1.6e9 < t <= time.time() for t in created)


def test_request_series_follow_the_created_switch() -> None:
    disable_created_metrics()
    try:
        m, ref = Metrics(), ReferenceRequestMetrics()
        for args in _random_observations(8, 50):
            m.observe_request(*args)  # type: ignore[arg-type]
            ref.observe_request(*args)  # type: ignore[arg-type]
        text = request_families(_text(m))
        assert text == ref.text()
        assert "_created" not in text
    finally:
        enable_created_metrics()
