"""Token usage of one request and the usage-journal record (the JSON line contract of DESIGN.md).

Owns `Usage` (read from an upstream's OpenAI-shaped `usage` object), `JournalRecord` (exactly the
journal fields, in the documented order) with its serialization to one JSON line, and the tolerant
parse of one line back into a dict. No I/O here; `journal.py` writes and reads the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

_PICO_DIGITS = 12  # 1 USD = 10**12 pico-USD


def _count(value: Any) -> int:
    """A token count from untrusted JSON: non-negative int, anything else (None, junk) is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    return 0


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(slots=True)
class Usage:
    """Tokens of one request. `prompt_tokens` includes cached and cache-write tokens and
    `completion_tokens` includes reasoning tokens (OpenAI convention)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage:
        """Read an OpenAI chat-completions or embeddings `usage` object; missing pieces are 0."""
        if not isinstance(usage, Mapping):
            return cls()
        prompt_details = _details(usage, "prompt_tokens_details")
        completion_details = _details(usage, "completion_tokens_details")
        return cls(
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_count(prompt_details.get("cached_tokens")),
            cache_write_tokens=_count(prompt_details.get("cache_write_tokens")),
            reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
        )


def format_ts(ts: datetime) -> str:
    """`2026-11-24T10:00:00.123Z`: UTC, millisecond precision. A naive datetime is taken as UTC."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:"
        f"{ts.second:02d}.{ts.microsecond // 1000:03d}Z"
    )


def pico_usd_decimal(pico: int) -> str:
    """An exact plain decimal for a pico-USD amount: 68800000 -> "0.0000688" (no exponent)."""
    sign = "-" if pico < 0 else ""
    digits = str(abs(pico)).rjust(_PICO_DIGITS + 1, "0")
    whole, frac = digits[:-_PICO_DIGITS], digits[-_PICO_DIGITS:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


@dataclass(slots=True, kw_only=True)
class JournalRecord:
    """One finished request (success or failure): exactly the journal fields, in order.

    `cost_usd` is derived from `cost_pico_usd` (the exact figure the ledger sums) and is not an
    init argument; `to_json_line` always derives it afresh. Fields that may be unknown when a
    request failed early are nullable.
    """

    ts: datetime
    request_id: str
    key_id: str | None = None
    user: str | None = None
    tags: tuple[str, ...] | list[str] = ()
    ingress: str
    model: str
    resolved_model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    status: int
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_pico_usd: int = 0
    cost_usd: float = field(init=False)
    latency_ms: int
    ttft_ms: int | None = None
    attempts: int = 1
    config_generation: int
    deployment: str | None = None
    usage_estimated: bool = False

    def __post_init__(self) -> None:
        self.cost_usd = self.cost_pico_usd / 10**_PICO_DIGITS

    @property
    def day(self) -> date:
        """The UTC date of `ts`: which daily journal file the record belongs to."""
        ts = self.ts.astimezone(UTC) if self.ts.tzinfo is not None else self.ts
        return ts.date()

    def set_usage(self, usage: Usage, cost_pico_usd: int) -> None:
        """Copy the token counts of `usage` and the request's exact cost onto the record."""
        self.prompt_tokens = usage.prompt_tokens
        self.completion_tokens = usage.completion_tokens
        self.cached_tokens = usage.cached_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        self.cost_pico_usd = cost_pico_usd
        self.cost_usd = cost_pico_usd / 10**_PICO_DIGITS

    def to_json_line(self) -> bytes:
        """One compact JSON object and a newline; `cost_usd` is written as a plain decimal."""
        return orjson.dumps(
            {
                "ts": format_ts(self.ts),
                "request_id": self.request_id,
                "key_id": self.key_id,
                "user": self.user,
                "tags": self.tags,
                "ingress": self.ingress,
                "model": self.model,
                "resolved_model": self.resolved_model,
                "provider": self.provider,
                "upstream_model": self.upstream_model,
                "stream": self.stream,
                "status": self.status,
                "error_code": self.error_code,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "cost_pico_usd": self.cost_pico_usd,
                "cost_usd": orjson.Fragment(pico_usd_decimal(self.cost_pico_usd)),
                "latency_ms": self.latency_ms,
                "ttft_ms": self.ttft_ms,
                "attempts": self.attempts,
                "config_generation": self.config_generation,
                "deployment": self.deployment,
                "usage_estimated": self.usage_estimated,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )


def parse_journal_line(line: bytes) -> dict[str, Any] | None:
    """Parse one journal line; `None` for a blank, torn or otherwise invalid line."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
