"""Token usage of one request and the usage-journal record (the JSON line contract of DESIGN.md).

Owns `Usage` (read from an upstream's OpenAI-shaped `usage` object), `JournalRecord` (exactly the
journal fields, in the documented order) with its serialization to one JSON line, and the tolerant
parse of one line back into a dict. No I/O here; `journal.py` writes and reads the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

_PICO_DIGITS = 12  # 1 USD = 10**12 pico-USD
_PICO_PER_USD = 10**_PICO_DIGITS


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
    if ts.tzinfo is UTC:  # what the request path makes: one C call, no conversion
        return ts.isoformat(timespec="milliseconds")[:-6] + "Z"
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="milliseconds") + "Z"  # truncates to ms, like // 1000


def pico_usd_decimal(pico: int) -> str:
    """An exact plain decimal for a pico-USD amount: 68800000 -> "0.0000688" (no exponent)."""
    if 0 < pico < _PICO_PER_USD:  # the usual request: a fraction of a dollar
        return f"0.{pico:012d}".rstrip("0")
    sign = "-" if pico < 0 else ""
    digits = str(abs(pico)).rjust(_PICO_DIGITS + 1, "0")
    whole, frac = digits[:-_PICO_DIGITS], digits[-_PICO_DIGITS:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


class TsFormatter:
    """`format_ts` that remembers the UTC second it formatted last.

    The journal writer formats records in arrival order, so consecutive `ts` mostly share their
    second: then the text is the remembered `YYYY-MM-DDTHH:MM:SS` plus a precomputed `.mmmZ`
    (no date arithmetic, no formatting). Anything else goes through `format_ts`. One instance per
    writer (not shared across threads).
    """

    __slots__ = ("_end", "_prefix", "_start")

    def __init__(self) -> None:
        self._start = self._end = _EPOCH
        self._prefix = ""

    def __call__(self, ts: datetime) -> str:
        if ts.tzinfo is UTC and self._start <= ts < self._end:
            return self._prefix + _MILLIS[ts.microsecond // 1000]
        text = format_ts(ts)
        if ts.tzinfo is UTC:
            self._start = ts.replace(microsecond=0)
            self._end = self._start + _SECOND
            self._prefix = text[:-5]
        return text


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
        ts = self.ts
        if ts.tzinfo is not None and ts.tzinfo is not UTC:
            ts = ts.astimezone(UTC)
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

    def to_json_line(self, ts_text: Callable[[datetime], str] = format_ts) -> bytes:
        """One compact JSON object and a newline; `cost_usd` is written as a plain decimal.

        `ts_text` formats `ts` (the writer passes its `TsFormatter`: same text, cheaper).
        """
        return orjson.dumps(
            {
                "ts": ts_text(self.ts),
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


_new_record = object.__new__


def finished_record(
    ts: datetime,
    request_id: str,
    key_id: str | None,
    user: str | None,
    tags: tuple[str, ...],
    ingress: str,
    model: str,
    resolved_model: str | None,
    provider: str | None,
    upstream_model: str | None,
    stream: bool,
    status: int,
    error_code: str | None,
    usage: Usage,
    cost_pico_usd: int,
    latency_ms: int,
    ttft_ms: int | None,
    attempts: int,
    config_generation: int,
    deployment: str | None,
    usage_estimated: bool,
) -> JournalRecord:
    """The record of one finished request, in one positional pass (the meter step's hot path).

    The same record as `JournalRecord(...)` plus `set_usage(usage, cost_pico_usd)`, without the
    generated keyword `__init__` (measured: about 7x its cost). Every field is set here (the
    usage ones by `set_usage`); a test pins the result against the dataclass.
    """
    r: JournalRecord = _new_record(JournalRecord)
    r.ts = ts
    r.request_id = request_id
    r.key_id = key_id
    r.user = user
    r.tags = tags
    r.ingress = ingress
    r.model = model
    r.resolved_model = resolved_model
    r.provider = provider
    r.upstream_model = upstream_model
    r.stream = stream
    r.status = status
    r.error_code = error_code
    r.set_usage(usage, cost_pico_usd)
    r.latency_ms = latency_ms
    r.ttft_ms = ttft_ms
    r.attempts = attempts
    r.config_generation = config_generation
    r.deployment = deployment
    r.usage_estimated = usage_estimated
    return r


def parse_journal_line(line: bytes) -> dict[str, Any] | None:
    """Parse one journal line; `None` for a blank, torn or otherwise invalid line."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
