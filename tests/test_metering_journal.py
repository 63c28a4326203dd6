"""The usage journal writer and replay, against real files in tmp_path (no timing asserts)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from routerd.metering.journal import JournalWriter, iter_journal, journal_files
from routerd.metering.usage import JournalRecord

DAY1 = date(2026, 11, 24)
DAY2 = date(2026, 11, 25)
WAIT = 10.0  # only a guard against a hang, never asserted on


def record(n: int, day: date = DAY1, **overrides: Any) -> JournalRecord:
    ts = datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC) + timedelta(milliseconds=n)
    fields: dict[str, Any] = {
        "ts": ts,
        "request_id": f"req-{n}",
        "key_id": "k",
        "ingress": "chat_completions",
        "model": "fast",
        "status": 200,
        "prompt_tokens": 12,
        "completion_tokens": 40,
        "cost_pico_usd": 68_800_000,
        "latency_ms": 10,
        "config_generation": 1,
    }
    fields.update(overrides)
    return JournalRecord(**fields)


def ids(directory: Path, **kwargs: Any) -> list[str]:
    return [r["request_id"] for r in iter_journal(directory, **kwargs)]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class Recorder:
    """Collects on_written / on_error calls and lets a test await them."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.errors: list[BaseException] = []
        self.event = asyncio.Event()

    def on_written(self, n: int) -> None:
        self.written.append(n)
        self.event.set()

    def on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.event.set()

    async def until_written(self, total: int) -> None:
        await self.until(lambda: sum(self.written) >= total)

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self.event.clear()
                await self.event.wait()


def writer(directory: Path, rec: Recorder | None = None, **kwargs: Any) -> JournalWriter:
    rec = rec or Recorder()
    return JournalWriter(directory, on_written=rec.on_written, on_error=rec.on_error, **kwargs)


async def test_records_of_two_utc_days_go_to_two_files(tmp_path: Path) -> None:
    journal = writer(tmp_path / "usage")
    await journal.start()
    for n in range(10):
        journal.submit(record(n, DAY1 if n % 2 else DAY2))
    await journal.close()
    assert sorted(p.name for p in (tmp_path / "usage").iterdir()) == [
        "usage-2026-11-24.jsonl",
        "usage-2026-11-25.jsonl",
    ]
    day1 = lines_of(tmp_path / "usage" / "usage-2026-11-24.jsonl")
    day2 = lines_of(tmp_path / "usage" / "usage-2026-11-25.jsonl")
    assert [r["request_id"] for r in day1] == [f"req-{n}" for n in (1, 3, 5, 7, 9)]
    assert [r["request_id"] for r in day2] == [f"req-{n}" for n in (0, 2, 4, 6, 8)]
    assert all(r["ts"].startswith("2026-11-24T23:59:00.") for r in day1)


async def test_submits_are_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    rec = Recorder()
    journal = writer(tmp_path, rec, fsync="never")
    await journal.start()
    for n in range(1000):
        journal.submit(record(n))
    await rec.until(lambda: sum(rec.written) == 1000)
    assert rec.written == [512, 488]
    assert len(writes) == 2
    await journal.close()
    assert ids(tmp_path) == [f"req-{n}" for n in range(1000)]


async def test_close_flushes_everything_and_is_idempotent(tmp_path: Path) -> None:
    rec = Recorder()
    journal = writer(tmp_path, rec, fsync="interval", fsync_interval_seconds=3600)
    await journal.start()
    for n in range(300):
        journal.submit(record(n))
    await journal.put(record(300))
    await asyncio.gather(journal.close(), journal.close())
    await journal.close()
    assert ids(tmp_path) == [f"req-{n}" for n in range(301)]
    assert sum(rec.written) == 301
    assert rec.errors == []
    with pytest.raises(RuntimeError):
        journal.submit(record(999))


async def test_close_without_start_writes_queued_records(tmp_path: Path) -> None:
    journal = writer(tmp_path / "never-started")
    journal.submit(record(1))
    await journal.close()
    assert ids(tmp_path / "never-started") == ["req-1"]


async def test_full_queue_submit_falls_back_to_awaiting_put(tmp_path: Path) -> None:
    rec = Recorder()
    journal = writer(tmp_path, rec, queue_size=2)
    await journal.start()
    for n in range(10):
        journal.submit(record(n))
    assert journal.overflow_puts == 8
    await journal.close()
    assert sorted(ids(tmp_path)) == sorted(f"req-{n}" for n in range(10))
    assert journal.dropped_records == 0


async def test_offer_refuses_when_full_and_put_waits_for_room_in_order(tmp_path: Path) -> None:
    journal = writer(tmp_path, queue_size=2)
    assert journal.offer(record(0)) and journal.offer(record(1))
    assert not journal.offer(record(2))  # full: the request path then awaits `put`
    waiting = [asyncio.create_task(journal.put(record(n))) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)  # no writer yet: no room
    await journal.start()
    await asyncio.gather(*waiting)
    await journal.flush()
    assert ids(tmp_path) == [f"req-{n}" for n in range(5)]
    await journal.close()
    assert journal.overflow_puts == 3


@pytest.mark.parametrize(("policy", "expected"), [("always", 3), ("interval", 1), ("never", 0)])
async def test_fsync_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, expected: int
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    rec = Recorder()
    journal = writer(tmp_path, rec, fsync=policy, fsync_interval_seconds=3600)
    await journal.start()
    for n in range(3):
        journal.submit(record(n))
        await rec.until_written(n + 1)
    await journal.close()
    assert len(fsyncs) == expected
    assert len(ids(tmp_path)) == 3


async def test_rollover_with_max_file_bytes(tmp_path: Path) -> None:
    line_len = len(record(0).to_json_line())
    limit = 3 * line_len + 10
    journal = writer(tmp_path, max_file_bytes=limit)
    await journal.start()
    for n in range(10):
        journal.submit(record(n))
    await journal.close()
    names = [p.name for p in journal_files(tmp_path)]
    assert names == [
        "usage-2026-11-24.jsonl",
        "usage-2026-11-24.1.jsonl",
        "usage-2026-11-24.2.jsonl",
        "usage-2026-11-24.3.jsonl",
    ]
    assert [len(lines_of(tmp_path / name)) for name in names] == [3, 3, 3, 1]
    assert all((tmp_path / name).stat().st_size <= limit for name in names)
    assert ids(tmp_path) == [f"req-{n}" for n in range(10)]

    restarted = writer(tmp_path, max_file_bytes=limit)
    await restarted.start()
    restarted.submit(record(10))
    await restarted.close()
    assert len(journal_files(tmp_path)) == 4
    assert len(lines_of(tmp_path / "usage-2026-11-24.3.jsonl")) == 2


def test_journal_files_sorted_and_filtered(tmp_path: Path) -> None:
    for name in [
        "usage-2026-11-25.jsonl",
        "usage-2026-11-24.10.jsonl",
        "usage-2026-11-24.2.jsonl",
        "usage-2026-11-24.jsonl",
        "usage-2026-11-23.jsonl",
        "usage-2026-13-99.jsonl",
        "notes.txt",
    ]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in journal_files(tmp_path)] == [
        "usage-2026-11-23.jsonl",
        "usage-2026-11-24.jsonl",
        "usage-2026-11-24.2.jsonl",
        "usage-2026-11-24.10.jsonl",
        "usage-2026-11-25.jsonl",
    ]
    assert [p.name for p in journal_files(tmp_path, since=DAY1, until=DAY1)] == [
        "usage-2026-11-24.jsonl",
        "usage-2026-11-24.2.jsonl",
        "usage-2026-11-24.10.jsonl",
    ]
    assert journal_files(tmp_path / "missing") == []


def test_iter_journal_skips_torn_and_invalid_lines(tmp_path: Path) -> None:
    good = [record(n).to_json_line() for n in range(3)]
    torn = record(3).to_json_line()[:40]
    (tmp_path / "usage-2026-11-24.jsonl").write_bytes(
        good[0] + b"\n" + b"not json\n" + b"[1]\n" + good[1] + good[2] + torn
    )
    (tmp_path / "usage-2026-11-25.jsonl").write_bytes(record(4, DAY2).to_json_line())
    assert ids(tmp_path) == ["req-0", "req-1", "req-2", "req-4"]
    assert ids(tmp_path, since=DAY2) == ["req-4"]
    assert ids(tmp_path, until=DAY1) == ["req-0", "req-1", "req-2"]


async def test_writer_never_glues_a_record_to_a_torn_line(tmp_path: Path) -> None:
    (tmp_path / "usage-2026-11-24.jsonl").write_bytes(
        record(0).to_json_line() + record(1).to_json_line()[:50]
    )
    journal = writer(tmp_path)
    await journal.start()
    journal.submit(record(2))
    await journal.close()
    assert ids(tmp_path) == ["req-0", "req-2"]


async def test_write_error_is_reported_and_the_writer_recovers(tmp_path: Path) -> None:
    directory = tmp_path / "usage"
    rec = Recorder()
    journal = writer(directory, rec, fsync="never", link_check_seconds=0.0)
    await journal.start()
    journal.submit(record(0))
    await rec.until(lambda: sum(rec.written) == 1)

    shutil.move(directory, tmp_path / "moved-away")  # the open file goes with it
    directory.write_bytes(b"a file where the directory was")
    journal.submit(record(1))
    await rec.until(lambda: len(rec.errors) >= 1)
    assert isinstance(rec.errors[0], OSError)

    directory.unlink()
    directory.mkdir()
    journal.submit(record(2))
    await rec.until(lambda: sum(rec.written) == 3)
    await journal.close()
    assert ids(directory) == ["req-1", "req-2"]
    assert ids(tmp_path / "moved-away") == ["req-0"]
    assert journal.dropped_records == 0


async def test_a_rotated_file_keeps_its_records_until_the_writer_reopens_the_path(
    tmp_path: Path,
) -> None:
    """logrotate renames the file: records written before the writer next checks the path (at
    most `link_check_seconds` later) go to the renamed file, the ones after to a new file."""
    rec = Recorder()
    journal = writer(tmp_path, rec, fsync="never", link_check_seconds=0.5)
    await journal.start()
    journal.submit(record(0))
    await rec.until_written(1)
    current = tmp_path / "usage-2026-11-24.jsonl"
    rotated = tmp_path / "rotated-by-logrotate.log"
    current.rename(rotated)
    journal.submit(record(1))  # within the check interval: still the open (renamed) file
    await rec.until_written(2)
    await asyncio.sleep(0.6)  # past the check interval: the path is checked, a new file opened
    journal.submit(record(2))
    await journal.close()
    assert [r["request_id"] for r in lines_of(rotated)] == ["req-0", "req-1"]
    assert [r["request_id"] for r in lines_of(current)] == ["req-2"]


async def test_unserializable_record_is_reported_not_fatal(tmp_path: Path) -> None:
    rec = Recorder()
    journal = writer(tmp_path, rec)
    await journal.start()
    journal.submit(record(0, tags=(object(),)))
    journal.submit(record(1))
    await journal.close()
    assert ids(tmp_path) == ["req-1"]
    assert len(rec.errors) == 1
    assert journal.dropped_records == 1
