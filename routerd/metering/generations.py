"""Recent request metadata for `GET /v1/generation?id=` (OpenRouter-style), bounded in memory.

A small LRU with a TTL: at most `max_entries` records, each kept `ttl_seconds`. Lookups are
scoped to the key that made the request, so one key never sees another's metadata. It is process
memory only: the usage journal remains the durable record.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from routerd.metering.usage import JournalRecord, format_ts


class GenerationCache:
    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, JournalRecord]] = OrderedDict()

    def put(self, record: JournalRecord) -> None:
        items, request_id = self._items, record.request_id
        size = len(items)
        items[request_id] = (self._clock() + self._ttl, record)  # a new key goes last
        if len(items) == size:  # a client-chosen id seen again: the newest is the one kept
            items.move_to_end(request_id)
        while len(items) > self._max:
            items.popitem(last=False)

    def get(self, request_id: str, key_id: str) -> JournalRecord | None:
        item = self._items.get(request_id)
        if item is None:
            return None
        expires, record = item
        if expires <= self._clock():
            del self._items[request_id]
            return None
        return record if record.key_id == key_id else None


def generation_body(record: JournalRecord) -> dict[str, Any]:
    """OpenRouter's `GET /generation` data shape, from one journal record (plus routerd fields)."""
    return {
        "id": record.request_id,
        "request_id": record.request_id,
        "created_at": format_ts(record.ts),
        "model": record.resolved_model or record.model,
        "provider_name": record.provider,
        "api_type": record.ingress,
        "streamed": record.stream,
        "cancelled": record.status == 499,
        "latency": record.latency_ms,
        "generation_time": record.latency_ms - (record.ttft_ms or 0),
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_cached": record.cached_tokens,
        "native_tokens_reasoning": record.reasoning_tokens,
        "total_cost": record.cost_usd,
        "usage": record.cost_usd,
        "is_byok": False,
        "origin": "",
        "status": record.status,
        "error_code": record.error_code,
        "upstream_model": record.upstream_model,
        "attempts": record.attempts,
        "cost_pico_usd": record.cost_pico_usd,
    }
