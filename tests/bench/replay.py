"""Journal replay at startup: write N realistic journal lines, time the replay in a fresh process.

`write_journal` spreads N lines (the DESIGN.md journal line shape, as `JournalRecord` writes it)
over 30 daily files ending today. `python -m tests.bench.replay DIR` times the replay callable
`pick()` chooses and prints one JSON line: `routerd.metering.ledger.replay_journal(DIR)` when that
function exists (the ledger replay at startup), else a scan of
`routerd.metering.journal.iter_journal(DIR)` summing `cost_pico_usd` per key (what a replay
minimally does). Running it in its own process measures a cold start, as the daemon would see it.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

DAYS = 30


def write_journal(directory: Path, lines: int, days: int = DAYS) -> int:
    """Write `lines` journal lines over `days` daily files; returns the bytes written."""
    directory.mkdir(parents=True, exist_ok=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day, total = -(-lines // days), 0
    written = 0
    for d in range(days):
        day = today - timedelta(days=days - 1 - d)
        count = min(per_day, lines - written)
        if count <= 0:
            break
        step = 86_400_000 // count
        prefix = day.date().isoformat()
        out = bytearray()
        for i in range(count):
            n = written + i
            ms = i * step
            sec, ms = divmod(ms, 1000)
            ts = f"{prefix}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{ms:03d}Z"
            stream = n % 3 == 0
            prompt, completion = 200 + n % 1800, 20 + n % 600
            cost = prompt * 400_000 + completion * 1_600_000
            out += orjson.dumps(
                {
                    "ts": ts,
                    "request_id": f"req-{n:012x}",
                    "key_id": f"key-{n % 1000:05d}",
                    "user": f"user-{n % 200:03d}",
                    "tags": [f"team-{n % 50:02d}"],
                    "ingress": ("chat_completions", "messages", "responses")[n % 3],
                    "model": "fast",
                    "resolved_model": "openai/gpt-4.1-mini",
                    "provider": "openai",
                    "upstream_model": "gpt-4.1-mini",
                    "stream": stream,
                    "status": 200 if n % 50 else 429,
                    "error_code": None if n % 50 else "provider_rate_limit",
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "cached_tokens": 0,
                    "cache_write_tokens": 0,
                    "reasoning_tokens": 0,
                    "cost_pico_usd": cost,
                    "cost_usd": orjson.Fragment(f"{cost / 10**12:.10f}".rstrip("0")),
                    "latency_ms": 300 + n % 2000,
                    "ttft_ms": 120 + n % 300 if stream else None,
                    "attempts": 1,
                    "config_generation": 1 + n % 3,
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
        (directory / f"usage-{day.date().isoformat()}.jsonl").write_bytes(out)
        written += count
        total += len(out)
    return total


def _scan_journal(directory: Path) -> int:
    from routerd.metering.journal import iter_journal

    spend: dict[Any, int] = {}
    count = 0
    for record in iter_journal(directory):
        key = record.get("key_id")
        spend[key] = spend.get(key, 0) + int(record.get("cost_pico_usd") or 0)
        count += 1
    return count


def pick() -> tuple[str, Callable[[Path], Any]]:
    """The replay to time: the ledger's startup replay if it exists, else the journal scan."""
    try:
        ledger = importlib.import_module("routerd.metering.ledger")
    except ImportError:
        ledger = None
    replay = getattr(ledger, "replay_journal", None)
    if callable(replay):
        return "routerd.metering.ledger.replay_journal", replay
    return "routerd.metering.journal.iter_journal (scan, sum cost per key)", _scan_journal


def main() -> None:
    directory = Path(sys.argv[1])
    name, replay = pick()
    started = time.perf_counter()
    result = replay(directory)
    seconds = time.perf_counter() - started
    records = result if isinstance(result, int) else None
    print(json.dumps({"callable": name, "seconds": seconds, "records": records}))


if __name__ == "__main__":
    main()
