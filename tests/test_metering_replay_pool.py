"""Cold replay in worker processes: the same result as the in-process parse, and a fallback."""

from __future__ import annotations

import concurrent.futures
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from routerd.metering.budgets import BudgetScope
from routerd.metering.replay import (
    ReplayResult,
    Target,
    budget_targets,
    replay,
    usage_targets,
)
from routerd.metering.replay_pool import SEQUENTIAL, PoolPolicy, usable_cpus, workers_for
from routerd.metering.summaries import load_summary
from tests.test_metering_ledger import budget, rules_of, write_journal

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
EAGER = PoolPolicy(min_bytes=0)  # a pool for any two files


def _journal(directory: Path) -> None:
    """24 days of records (none on the 10th), two torn lines, a vanished file, a busy today."""
    rows = [
        (datetime(2026, 11, d, h, m, tzinfo=UTC), f"k{(d + h + m) % 4}", f"m/{m % 3}", d * h + m)
        for d in range(1, 25)
        if d != 10
        for h in (0, 7, 13, 23)
        for m in (0, 29, 59)
        if d < 24 or h < 12
    ]
    rows += [(NOW - timedelta(seconds=s), "k1", "m/0", 5) for s in (10, 30, 90)]
    write_journal(directory, rows)
    for day in ("03", "17"):
        with (directory / f"usage-2026-11-{day}.jsonl").open("ab") as handle:
            handle.write(b'{"ts": "2026-11-' + day.encode() + b'T23:59:59.000Z", "key_id": "k\n')
            handle.write(b"[1, 2]\nnot json\n")
    (directory / "usage-2026-11-10.jsonl").symlink_to(directory / "gone.jsonl")  # vanished


def _targets() -> list[Target]:
    rules = rules_of(
        budget("month", 1, "monthly"),
        budget("week", 1, "weekly"),
        budget("k1", 1, "monthly", BudgetScope("key", "k1")),
        budget("m2", 1, "total", BudgetScope("model", "m/2")),
    )
    return budget_targets(rules.values(), NOW) + usage_targets(["k0", "k1", "k2", "k3"], NOW)


def _replayed(directory: Path, pool: PoolPolicy) -> tuple[ReplayResult, dict[str, Any]]:
    result = replay(directory, _targets(), NOW, NOW - timedelta(hours=1), pool)
    summaries = {path.name: load_summary(path) for path in sorted(directory.glob("usage-*.jsonl"))}
    return result, summaries


def _fields(result: ReplayResult) -> tuple[Any, ...]:
    return (
        result.spend, result.recent, result.request_ids, result.last_seen,
        result.lines, result.skipped, result.files,
    )  # fmt: skip


def _copies(tmp_path: Path) -> tuple[Path, Path]:
    _journal(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    return tmp_path / "a", tmp_path / "b"


def test_the_pool_replays_exactly_what_the_in_process_parse_does(tmp_path: Path) -> None:
    sequential_dir, pool_dir = _copies(tmp_path)
    closed = sorted(pool_dir.glob("usage-2026-11-[01]*.jsonl"))
    if usable_cpus() >= 2:
        assert workers_for(closed, EAGER) >= 2
    sequential, sequential_summaries = _replayed(sequential_dir, SEQUENTIAL)
    with capture_logs() as logs:
        pooled, pooled_summaries = _replayed(pool_dir, EAGER)
    assert logs == []  # the pool ran: no fallback
    assert _fields(pooled) == _fields(sequential)
    assert pooled_summaries == sequential_summaries
    assert pooled.skipped == 6 and pooled.files == 23  # 3 bad lines on 2 days; the 10th is gone
    assert pooled.recent == {"k1": (2, 30)} and len(pooled.request_ids) == 3
    assert sum(s is not None for s in pooled_summaries.values()) == 22  # every closed day
    warm = replay(pool_dir, _targets(), NOW, NOW - timedelta(hours=1), EAGER)
    assert _fields(warm) == _fields(sequential)


class _NoProcesses:
    """`ProcessPoolExecutor` in a sandbox that forbids new processes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def submit(self, *args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def test_a_pool_that_cannot_start_falls_back_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequential_dir, pool_dir = _copies(tmp_path)
    sequential, sequential_summaries = _replayed(sequential_dir, SEQUENTIAL)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _NoProcesses)
    with capture_logs() as logs:
        pooled, pooled_summaries = _replayed(pool_dir, EAGER)
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("journal_replay_pool_failed", "warning")
    ]
    assert "Operation not permitted" in logs[0]["error"]
    assert _fields(pooled) == _fields(sequential)
    assert pooled_summaries == sequential_summaries


def test_small_journals_and_single_files_stay_in_process(tmp_path: Path) -> None:
    _journal(tmp_path)
    closed = sorted(tmp_path.glob("usage-2026-11-0*.jsonl"))
    assert workers_for(closed, PoolPolicy()) == 0  # far below 64 MB
    assert workers_for(closed[:1], EAGER) == 0  # one file: nothing to share
    assert workers_for(closed, PoolPolicy(min_bytes=0, max_workers=1)) == 0
