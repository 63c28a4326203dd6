"""Journal replay at startup: write N realistic journal lines, time the replay in a fresh process.

`write_journal` spreads N lines (the DESIGN.md journal line shape, as `JournalRecord` writes it)
over 30 daily files ending today. `python -m tests.bench.replay DIR` times the daemon's startup
replay (`Ledger.rebuild` with 1,051 budgets and 1,000 keys' usage counters) in its own process,
twice: cold (no per-day summaries yet: every line parsed) and warm (a restart: closed days read
from their summaries, today's file parsed), and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
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


def _rules() -> list[Any]:
    """Budgets like a real deployment's: global monthly, one weekly per tag, one daily per key."""
    from routerd.config.model import BudgetConfig, BudgetScope
    from routerd.metering.budgets import build_rules

    budgets = [BudgetConfig("org", 1e6, "monthly", None, BudgetScope("global"))]
    budgets += [
        BudgetConfig(f"team-{t:02d}", 1e4, "weekly", None, BudgetScope("tag", f"team-{t:02d}"))
        for t in range(50)
    ]
    budgets += [
        BudgetConfig(f"key-{k:05d}", 1e3, "daily", None, BudgetScope("key", f"key-{k:05d}"))
        for k in range(1000)
    ]
    return list(build_rules(budgets, []).values())


async def _rebuild(directory: Path) -> int:
    """The daemon's startup replay: `Ledger.rebuild` over the budgets and every key's usage."""
    from routerd.metering.ledger import Ledger
    from routerd.metering.store import InMemoryStore

    ledger = Ledger(InMemoryStore())
    result = await ledger.rebuild(directory, _rules(), [f"key-{k:05d}" for k in range(1000)])
    return result.lines


def main() -> None:
    """Time the startup replay twice: cold (no day summaries yet) and warm (a restart)."""
    import asyncio
    import shutil

    directory = Path(sys.argv[1])
    shutil.rmtree(directory / ".summaries", ignore_errors=True)
    started = time.perf_counter()
    records = asyncio.run(_rebuild(directory))
    cold = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(_rebuild(directory))
    warm = time.perf_counter() - started
    print(
        json.dumps(
            {
                "callable": "routerd.metering.ledger.Ledger.rebuild (1,051 budgets, 1,000 keys)",
                "seconds": cold,
                "warm_seconds": warm,
                "records": records,
            }
        )
    )


if __name__ == "__main__":
    main()
