"""The generation cache: bounded size, TTL, and lookups scoped to the requesting key."""

from __future__ import annotations

from datetime import UTC, datetime

from routerd.metering.generations import GenerationCache, generation_body
from routerd.metering.usage import JournalRecord


def _record(request_id: str, key: str = "k") -> JournalRecord:
    return JournalRecord(
        ts=datetime(2026, 11, 24, tzinfo=UTC),
        request_id=request_id,
        key_id=key,
        ingress="chat_completions",
        model="m",
        status=200,
        latency_ms=5,
        config_generation=1,
    )


def test_ttl_size_and_key_scope() -> None:
    now = [0.0]
    cache = GenerationCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    cache.put(_record("a"))
    cache.put(_record("b", key="other"))
    assert cache.get("a", "k") is not None
    assert cache.get("b", "k") is None  # another key's request
    cache.put(_record("c"))  # evicts the oldest, "a"
    assert cache.get("a", "k") is None
    assert cache.get("c", "k") is not None
    now[0] = 10.0
    assert cache.get("c", "k") is None  # expired


def test_generation_body_shape() -> None:
    body = generation_body(_record("req_1"))
    assert body["id"] == body["request_id"] == "req_1"
    assert body["created_at"] == "2026-11-24T00:00:00.000Z"
    assert body["cancelled"] is False
