"""Exact pico-USD pricing, request cost, usage parsing and the journal line contract."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from routerd.metering.pricing import (
    PicoPrices,
    cost_pico,
    pico_to_usd,
    usd_per_million_to_pico_per_token,
)
from routerd.metering.usage import (
    JournalRecord,
    TsFormatter,
    Usage,
    finished_record,
    format_ts,
    parse_journal_line,
)

DESIGN_FIELDS = [
    "ts", "request_id", "key_id", "user", "tags", "ingress", "model", "resolved_model",
    "provider", "upstream_model", "stream", "status", "error_code", "prompt_tokens",
    "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost_pico_usd", "cost_usd", "latency_ms", "ttft_ms", "attempts", "config_generation",
    "deployment",  # added by the routing work: fields are only ever appended
]  # fmt: skip


def make_record(**overrides: Any) -> JournalRecord:
    fields: dict[str, Any] = {
        "ts": datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
        "request_id": "req-1",
        "key_id": "search-team",
        "user": "alice",
        "tags": ("search",),
        "ingress": "chat_completions",
        "model": "fast",
        "resolved_model": "openai/gpt-4.1-mini",
        "provider": "openai",
        "upstream_model": "gpt-4.1-mini",
        "stream": True,
        "status": 200,
        "prompt_tokens": 12,
        "completion_tokens": 40,
        "cost_pico_usd": 68_800_000,
        "latency_ms": 812,
        "ttft_ms": 140,
        "attempts": 1,
        "config_generation": 3,
    }
    fields.update(overrides)
    return JournalRecord(**fields)


@pytest.mark.parametrize(
    ("price", "pico"),
    [
        (0.40, 400_000),
        (1.60, 1_600_000),
        (0, 0),
        (3, 3_000_000),
        ("2.5", 2_500_000),
        (0.000001, 1),
        ("0.123456", 123_456),
        (15.000001, 15_000_001),
        (0.02, 20_000),
        ("1e-6", 1),
    ],
)
def test_price_is_exact_pico_per_token(price: float | int | str, pico: int) -> None:
    assert usd_per_million_to_pico_per_token(price) == pico


@pytest.mark.parametrize("price", [0.0000001, "0.1234567", 1.0000005])
def test_seven_decimals_are_rejected(price: float | str) -> None:
    with pytest.raises(ValueError, match="more than 6 decimals"):
        usd_per_million_to_pico_per_token(price)


@pytest.mark.parametrize("price", [-0.1, "-1", "abc", "nan", "inf", float("inf"), True])
def test_invalid_prices_are_rejected(price: Any) -> None:
    with pytest.raises(ValueError):
        usd_per_million_to_pico_per_token(price)


def test_design_example_cost() -> None:
    prices = PicoPrices.from_usd(0.40, 1.60)
    cost = cost_pico(Usage(prompt_tokens=12, completion_tokens=40), prices)
    assert cost == 68_800_000
    assert pico_to_usd(cost) == pytest.approx(0.0000688, rel=0, abs=1e-18)


def test_ten_token_embedding_is_not_zero() -> None:
    prices = PicoPrices.from_usd(0.02, 0)
    cost = cost_pico(Usage(prompt_tokens=10), prices)
    assert cost == 200_000
    assert pico_to_usd(cost) > 0


def test_missing_cache_prices_default_to_prompt() -> None:
    prices = PicoPrices.from_usd(2, 8)
    assert prices == PicoPrices(
        prompt=2_000_000, completion=8_000_000, cached_prompt=2_000_000, cache_write=2_000_000
    )


def test_cached_and_cache_write_cost() -> None:
    prices = PicoPrices.from_usd(3, 15, cached_prompt=0.30, cache_write=3.75)
    usage = Usage(
        prompt_tokens=1000,
        completion_tokens=100,
        cached_tokens=600,
        cache_write_tokens=300,
        reasoning_tokens=50,
    )
    # 100 uncached, 600 cached, 300 written; reasoning is inside completion, not charged twice.
    expected = 100 * 3_000_000 + 600 * 300_000 + 300 * 3_750_000 + 100 * 15_000_000
    assert cost_pico(usage, prices) == expected


def test_inconsistent_cache_counts_never_go_negative() -> None:
    prices = PicoPrices.from_usd(1, 1, cached_prompt=0.5)
    assert cost_pico(Usage(prompt_tokens=5, cached_tokens=10), prices) == 10 * 500_000


def test_usage_from_openai_chat() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 256},
        }
    )
    assert usage == Usage(
        prompt_tokens=1200, completion_tokens=300, cached_tokens=1024, reasoning_tokens=256
    )


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"prompt_tokens": 10, "total_tokens": 10},
        {"prompt_tokens": 10, "prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens": 10, "completion_tokens": None, "prompt_tokens_details": {}},
    ],
)
def test_usage_from_openai_tolerates_missing_pieces(raw: dict[str, Any] | None) -> None:
    usage = Usage.from_openai(raw)
    assert usage.completion_tokens == 0
    assert usage.cached_tokens == 0
    assert usage.reasoning_tokens == 0
    assert usage.prompt_tokens == (10 if raw else 0)


# Fields added after DESIGN.md's line, in order (the contract: fields are only ever added).
ADDED_FIELDS = ["usage_estimated"]


def test_journal_record_fields_are_the_design_fields_then_the_added_ones() -> None:
    assert [f.name for f in dataclasses.fields(JournalRecord)] == DESIGN_FIELDS + ADDED_FIELDS


def test_journal_line_matches_the_contract() -> None:
    line = make_record().to_json_line()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b" " not in line  # compact
    parsed = orjson.loads(line)
    assert list(parsed) == DESIGN_FIELDS + ADDED_FIELDS
    assert parsed["ts"] == "2026-11-24T10:00:00.123Z"
    assert parsed["tags"] == ["search"]
    assert parsed["cost_pico_usd"] == 68_800_000
    assert parsed["cost_usd"] == 68_800_000 / 1e12
    assert b'"cost_usd":0.0000688,' in line
    assert parsed["error_code"] is None


def test_journal_ts_is_converted_to_utc_with_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    record = make_record(ts=datetime(2026, 11, 25, 1, 30, 5, 9999, tzinfo=plus_two))
    assert orjson.loads(record.to_json_line())["ts"] == "2026-11-24T23:30:05.009Z"
    assert record.day.isoformat() == "2026-11-24"


def test_failed_request_record_has_nulls() -> None:
    record = make_record(
        key_id=None,
        user=None,
        resolved_model=None,
        provider=None,
        upstream_model=None,
        ttft_ms=None,
        status=401,
        error_code="invalid_api_key",
        prompt_tokens=0,
        completion_tokens=0,
        cost_pico_usd=0,
    )
    parsed = orjson.loads(record.to_json_line())
    assert parsed["cost_usd"] == 0
    assert parsed["status"] == 401
    assert parsed["key_id"] is None


def test_set_usage_copies_tokens_and_cost() -> None:
    record = make_record(prompt_tokens=0, completion_tokens=0, cost_pico_usd=0)
    record.set_usage(Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=2), 1_234)
    parsed = orjson.loads(record.to_json_line())
    assert (parsed["prompt_tokens"], parsed["completion_tokens"], parsed["cached_tokens"]) == (
        7,
        3,
        2,
    )
    assert parsed["cost_pico_usd"] == 1_234
    assert record.cost_usd == 1_234 / 1e12


@pytest.mark.parametrize("pico", [0, 1, 999_999_999_999, 10**12, 123 * 10**12 + 5, 68_800_000])
def test_cost_usd_text_is_the_exact_figure(pico: int) -> None:
    parsed = orjson.loads(make_record(cost_pico_usd=pico).to_json_line())
    assert parsed["cost_usd"] == pico / 1e12


def test_parse_journal_line() -> None:
    line = make_record().to_json_line()
    assert parse_journal_line(line) == orjson.loads(line)
    assert parse_journal_line(line[:-20]) is None
    assert parse_journal_line(b"") is None
    assert parse_journal_line(b"[1, 2]") is None
    assert parse_journal_line(b"\xff\xfe") is None


# One full line per shape, byte for byte: the journal contract log pipelines parse.
GOLDEN_OK = (
    b'{"ts":"2026-11-24T10:00:00.123Z","request_id":"req-1","key_id":"search-team",'
    b'"user":"alice","tags":["search"],"ingress":"chat_completions","model":"fast",'
    b'"resolved_model":"openai/gpt-4.1-mini","provider":"openai","upstream_model":"gpt-4.1-mini",'
    b'"stream":true,"status":200,"error_code":null,"prompt_tokens":12,"completion_tokens":40,'
    b'"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,"cost_pico_usd":68800000,'
    b'"cost_usd":0.0000688,"latency_ms":812,"ttft_ms":140,"attempts":1,"config_generation":3,'
    b'"deployment":"openai/gpt-4.1-mini","usage_estimated":false}\n'
)
GOLDEN_FAILED = (
    b'{"ts":"2026-11-24T10:00:00.123Z","request_id":"req-1","key_id":null,"user":null,'
    b'"tags":[],"ingress":"chat_completions","model":"fast","resolved_model":null,'
    b'"provider":null,"upstream_model":null,"stream":false,"status":401,'
    b'"error_code":"invalid_api_key","prompt_tokens":0,"completion_tokens":0,"cached_tokens":0,'
    b'"cache_write_tokens":0,"reasoning_tokens":0,"cost_pico_usd":0,"cost_usd":0,'
    b'"latency_ms":812,"ttft_ms":null,"attempts":0,"config_generation":3,"deployment":null,'
    b'"usage_estimated":false}\n'
)
FAILED_FIELDS: dict[str, Any] = {
    "key_id": None, "user": None, "tags": (), "resolved_model": None, "provider": None,
    "upstream_model": None, "stream": False, "status": 401, "error_code": "invalid_api_key",
    "prompt_tokens": 0, "completion_tokens": 0, "cost_pico_usd": 0, "ttft_ms": None,
    "attempts": 0,
}  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "golden"),
    [({"deployment": "openai/gpt-4.1-mini"}, GOLDEN_OK), (FAILED_FIELDS, GOLDEN_FAILED)],
)
def test_journal_line_is_golden(overrides: dict[str, Any], golden: bytes) -> None:
    record = make_record(**overrides)
    assert record.to_json_line() == golden
    ts_text = TsFormatter()  # the writer's formatter: the first call fills it, the next reuse it
    assert [record.to_json_line(ts_text) for _ in range(3)] == [golden] * 3


def _finished(record: JournalRecord) -> JournalRecord:
    usage = Usage(
        record.prompt_tokens, record.completion_tokens, record.cached_tokens,
        record.cache_write_tokens, record.reasoning_tokens,
    )  # fmt: skip
    return finished_record(
        record.ts, record.request_id, record.key_id, record.user, tuple(record.tags),
        record.ingress, record.model, record.resolved_model, record.provider,
        record.upstream_model, record.stream, record.status, record.error_code, usage,
        record.cost_pico_usd, record.latency_ms, record.ttft_ms, record.attempts,
        record.config_generation, record.deployment, record.usage_estimated,
    )  # fmt: skip


@pytest.mark.parametrize(
    "overrides",
    [
        {"deployment": "openai/gpt-4.1-mini"},
        FAILED_FIELDS,
        {
            "cached_tokens": 4,
            "cache_write_tokens": 2,
            "reasoning_tokens": 9,
            "usage_estimated": True,
        },
    ],
)
def test_finished_record_sets_every_field_like_the_dataclass(overrides: dict[str, Any]) -> None:
    expected = make_record(**overrides)
    built = _finished(expected)
    assert dataclasses.asdict(built) == dataclasses.asdict(expected)  # every slot is set
    assert built == expected
    assert built.to_json_line() == expected.to_json_line()


def test_ts_formatter_matches_format_ts_across_seconds_days_and_zones() -> None:
    ts_text = TsFormatter()
    start = datetime(2026, 12, 31, 23, 59, 58, 999_000, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    for step in range(3000):
        ts = start + timedelta(microseconds=step * 997)
        for variant in (ts, ts.astimezone(plus_two), ts.replace(tzinfo=None)):
            assert ts_text(variant) == format_ts(variant)
    assert ts_text(start) == "2026-12-31T23:59:58.999Z"
