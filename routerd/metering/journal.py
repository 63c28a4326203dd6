"""The usage journal's single batched writer (the files themselves: `journal_files.py`, whose
readers are re-exported here).

`JournalWriter` is the only writer of the `usage-YYYY-MM-DD[.N].jsonl` files: one asyncio task
drains a bounded queue in batches, appends each day's lines with one `write` per file per batch,
and applies the fsync policy (blocking fsync runs in a thread).

Robustness choices:
- The queue is a plain list the writer takes whole (one swap per batch, no per-record queue
  operation) and one future that wakes the writer when the first record arrives.
- `offer` then `put` is the request path: `offer` queues without a coroutine when there is
  room; `put` waits for room when the queue is full (back-pressure: a request finishes only
  once its line is queued, so memory stays bounded by `queue_size`). `submit`
  never waits and never drops: when full it schedules an awaiting `put` (counted in
  `overflow_puts`), for callers that cannot await. `flush` waits until every accepted record
  went through a write attempt (admin usage reads and budget rebuilds use it).
- A failed write (OSError) is reported (`on_error`, log without record content); the lines that
  did not reach the file are kept (up to `queue_size` lines) and retried with the next batch or
  about once a second, reopening the file. Lines that reached the file are never written twice.
- Before appending to a file whose last byte is not a newline (crash or failed write left a torn
  line) a newline is written first, so the torn fragment never swallows a good record.
- If the current file disappears or is replaced (directory removed, file moved by logrotate),
  it is reopened: its path is checked (one `stat`) before a write at most once every
  `link_check_seconds` (1 s by default; 0 checks before every write), so records written within
  that time after a move still go to the moved file, never lost.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Literal

import structlog

from routerd.metering.journal_files import (
    DayFile,
    close_file,
    complete_lines,
    fsync_files,
    iter_journal,
    journal_days,
    journal_file_name,
    journal_files,
    open_day_file,
    scan_directory,
    still_linked,
)
from routerd.metering.usage import JournalRecord, TsFormatter

__all__ = ["JournalWriter", "iter_journal", "journal_days", "journal_file_name", "journal_files"]

FsyncPolicy = Literal["always", "interval", "never"]

BATCH_MAX_RECORDS = 512
LINGER_SECONDS = 0.002  # how long a batch waits for more records after its first
RETRY_SECONDS = 1.0
LINK_CHECK_SECONDS = 1.0  # how often the open file's path is checked (a rotated file is reopened)

log = structlog.get_logger(__name__)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JournalWriter:
    """The single writer of the usage journal (see the module docstring for the guarantees)."""

    def __init__(
        self,
        directory: Path,
        fsync: FsyncPolicy = "interval",
        fsync_interval_seconds: float = 1.0,
        queue_size: int = 10000,
        max_file_bytes: int | None = None,
        on_written: Callable[[int], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        link_check_seconds: float = LINK_CHECK_SECONDS,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._directory = Path(directory)
        self._fsync = fsync
        self._fsync_interval = fsync_interval_seconds
        self._queue_size = queue_size
        self._max_file_bytes = max_file_bytes
        self._on_written = on_written
        self._on_error = on_error
        self._link_check = link_check_seconds
        self._pending: list[JournalRecord] = []  # accepted, not yet taken by the writer
        self._wakeup: asyncio.Future[None] | None = None  # the idle writer waits on it
        self._room: list[asyncio.Future[None]] = []  # `put`s waiting for room
        self._stop = False  # set by close: the writer writes what is pending, then ends
        self._timer: asyncio.TimerHandle | None = None  # wakes the idle writer at a deadline
        self._timer_at: float | None = None
        self._overflow: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start(): asking for it costs a getpid
        self._closing: asyncio.Task[None] | None = None
        self._files: dict[date, DayFile] = {}
        self._retired: list[DayFile] = []
        self._retry: list[tuple[date, bytes]] = []
        self._last_sync = 0.0
        self._last_attempt = 0.0
        self.overflow_puts = 0
        self.dropped_records = 0
        self._accepted = 0
        self._processed = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ts_text = TsFormatter()

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def queue_depth(self) -> int:
        """Records waiting for the writer (queued, overflowing, or kept for retry)."""
        return len(self._pending) + len(self._overflow) + len(self._retry)

    async def start(self) -> None:
        """Create the directory and start the writer task (no-op when already started)."""
        if self._closing is not None:
            raise RuntimeError("journal writer is closed")
        if self._task is not None:
            return
        await asyncio.to_thread(self._directory.mkdir, parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._last_sync = self._loop.time()
        self._task = self._loop.create_task(self._run(), name="routerd-journal-writer")

    def submit(self, record: JournalRecord) -> None:
        """Queue a record without blocking; a full queue falls back to a scheduled `put`."""
        self._check_open()
        self._accepted += 1
        if len(self._pending) < self._queue_size:
            self._queue_record(record)
            return
        self.overflow_puts += 1
        task = asyncio.get_running_loop().create_task(self._append_when_room(record))
        self._overflow.add(task)
        task.add_done_callback(self._overflow.discard)

    def offer(self, record: JournalRecord) -> bool:
        """Queue a record if there is room now (the request path's usual case, no coroutine);
        False when the queue is full: then `await put(record)`."""
        self._check_open()
        pending = self._pending
        if len(pending) >= self._queue_size:
            return False
        pending.append(record)
        self._accepted += 1
        if self._wakeup is not None:
            _wake(self._wakeup)
        return True

    async def put(self, record: JournalRecord) -> None:
        """Queue a record, waiting for room (back-pressure)."""
        self._check_open()
        self._accepted += 1
        if len(self._pending) < self._queue_size:
            self._queue_record(record)
            return
        self.overflow_puts += 1
        await self._append_when_room(record)

    def _queue_record(self, record: JournalRecord) -> None:
        self._pending.append(record)
        if self._wakeup is not None:
            _wake(self._wakeup)

    async def _append_when_room(self, record: JournalRecord) -> None:
        """Wait until the writer took records, then queue `record` (waiters resume in order)."""
        loop = asyncio.get_running_loop()
        while len(self._pending) >= self._queue_size:
            waiter = loop.create_future()
            self._room.append(waiter)
            await waiter
        self._queue_record(record)

    async def flush(self) -> None:
        """Wait until every record accepted so far went through a write attempt.

        A record kept for retry after a failed write counts as attempted (the flush does not
        wait for the disk to come back). Returns at once when the writer is not running.
        """
        if self._task is None or self._task.done() or self._processed >= self._accepted:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self._accepted, waiter))
        await waiter

    def _processed_batch(self, count: int) -> None:
        self._processed += count
        ready = [(n, w) for n, w in self._flush_waiters if n <= self._processed]
        if ready:
            self._flush_waiters = [(n, w) for n, w in self._flush_waiters if n > self._processed]
            for _, waiter in ready:
                _wake(waiter)

    async def close(self) -> None:
        """Write everything queued, fsync (unless policy `never`), close files, stop. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    def _check_open(self) -> None:
        if self._closing is not None:
            raise RuntimeError("journal writer is closed; the record was not accepted")

    async def _close(self) -> None:
        if self._task is None:
            if not self._pending and not self._overflow:
                return
            await asyncio.to_thread(self._directory.mkdir, parents=True, exist_ok=True)
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="routerd-journal-writer")
        if self._overflow and not self._task.done():
            await asyncio.gather(*self._overflow)
        self._stop = True
        if self._wakeup is not None:
            _wake(self._wakeup)
        try:
            await self._task
        except Exception as exc:
            log.error("journal_writer_crashed", error=repr(exc))
            self._report(exc)

    async def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = await self._next_batch()
                if batch or self._retry or self._fsync_due():
                    await self._process_guarded(batch)
                self._processed_batch(len(batch))
            await self._finish()
            self._processed_batch(self._accepted)
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            for file in [*self._files.values(), *self._retired]:
                close_file(file)
            self._files.clear()
            self._retired.clear()

    async def _next_batch(self) -> tuple[list[JournalRecord], bool]:
        """The next batch (up to `BATCH_MAX_RECORDS`), and whether the writer should end after
        it (closing, nothing left). Empty when a retry or fsync deadline came first."""
        if not self._pending and not self._stop:
            waiter = self._wakeup = self._loop.create_future()
            self._arm_timer(self._loop)
            try:
                await waiter
            finally:
                self._wakeup = None
            if not self._pending and not self._stop:
                return [], False
        if len(self._pending) < BATCH_MAX_RECORDS and LINGER_SECONDS and not self._stop:
            # requests finishing meanwhile join this batch: one write per few ms, not per request
            linger = self._loop.create_future()
            self._loop.call_later(LINGER_SECONDS, _wake, linger)
            await linger
        batch = self._take()
        return batch, self._stop and not self._pending

    def _take(self) -> list[JournalRecord]:
        """Up to `BATCH_MAX_RECORDS` pending records, oldest first; wakes `put`s waiting."""
        pending = self._pending
        if len(pending) <= BATCH_MAX_RECORDS:
            self._pending = []
        else:
            self._pending = pending[BATCH_MAX_RECORDS:]
            pending = pending[:BATCH_MAX_RECORDS]
        room, self._room = self._room, []
        for waiter in room:
            _wake(waiter)
        return pending

    async def _finish(self) -> None:
        """After the stop marker: write stragglers and retries once more, then make it durable."""
        leftovers, self._pending = self._pending, []
        if leftovers or self._retry:
            await self._process(leftovers)
        await self._sync(include_open=True)
        for file in self._files.values():
            self._retired.append(file)
        self._files.clear()
        await self._sync(include_open=False)
        if self._retry:
            self._drop(len(self._retry))

    def _wait_deadline(self) -> float | None:
        """When an idle writer must wake up anyway (loop time): a retry or an interval fsync."""
        deadlines = []
        if self._retry:
            deadlines.append(self._last_attempt + RETRY_SECONDS)
        if self._fsync == "interval" and any(f.dirty for f in self._files.values()):
            deadlines.append(self._last_sync + self._fsync_interval)
        return min(deadlines) if deadlines else None

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for the wait deadline, re-armed only when the deadline moves (about once
        per fsync interval, not once per batch)."""
        deadline = self._wait_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if self._wakeup is not None:
            _wake(self._wakeup)

    def _fsync_due(self) -> bool:
        if self._fsync == "always":
            return True
        if self._fsync == "never":
            return False
        elapsed = self._loop.time() - self._last_sync
        return elapsed >= self._fsync_interval

    async def _process_guarded(self, records: list[JournalRecord]) -> None:
        """`_process`, but a bug in one batch is logged and reported, never the end of the task."""
        try:
            await self._process(records)
        except Exception as exc:
            log.exception("journal_batch_failed")
            self._report(exc)

    async def _process(self, records: list[JournalRecord]) -> None:
        entries = self._retry + self._serialize(records)
        self._retry = []
        self._last_attempt = self._loop.time()
        written = self._write_entries(entries) if entries else 0
        durable = await self._sync(include_open=self._fsync_due())
        if written and durable and self._on_written is not None:
            try:
                self._on_written(written)
            except Exception:
                log.exception("journal_on_written_failed")

    def _serialize(self, records: list[JournalRecord]) -> list[tuple[date, bytes]]:
        entries = []
        ts_text = self._ts_text
        for record in records:
            try:
                entries.append((record.day, record.to_json_line(ts_text)))
            except (TypeError, ValueError) as exc:
                log.error("journal_record_unserializable", error=type(exc).__name__)
                self._report(exc)
                self._drop(1)
        return entries

    def _write_entries(self, entries: list[tuple[date, bytes]]) -> int:
        by_day: dict[date, list[bytes]] = {}
        for day, line in entries:
            by_day.setdefault(day, []).append(line)
        written = sum(self._write_day(day, lines) for day, lines in sorted(by_day.items()))
        newest = max(self._files, default=None)
        for day in [d for d in self._files if d != newest]:
            self._retired.append(self._files.pop(day))
        if len(self._retry) > self._queue_size:
            excess = len(self._retry) - self._queue_size
            del self._retry[:excess]
            self._drop(excess)
        return written

    def _write_day(self, day: date, lines: list[bytes]) -> int:
        """Append `lines` to the day's file(s); unwritten lines are kept for retry on error."""
        done = 0
        while done < len(lines):
            try:
                file = self._file_for(day)
                take = self._lines_that_fit(file, lines, done)
                if take == 0:
                    self._roll_over(file)
                    continue
                count, error = self._append(file, lines[done : done + take])
            except OSError as exc:
                count, error = 0, exc
            done += count
            if error is not None:
                self._write_failed(day, error, done)
                self._retry.extend((day, line) for line in lines[done:])
                break
        return done

    def _file_for(self, day: date) -> DayFile:
        file = self._files.get(day)
        now = self._last_attempt  # the loop time of this batch
        if file is not None:
            if now < file.linked_until:
                return file
            if still_linked(file):
                file.linked_until = now + self._link_check
                return file
            self._retired.append(self._files.pop(day))
        indexes = [index for d, index, _ in scan_directory(self._directory) if d == day]
        file = open_day_file(self._directory, day, max(indexes, default=0))
        file.linked_until = now + self._link_check
        self._files[day] = file
        return file

    def _lines_that_fit(self, file: DayFile, lines: list[bytes], start: int) -> int:
        if self._max_file_bytes is None:
            return len(lines) - start
        room = self._max_file_bytes - file.size - (1 if file.needs_newline else 0)
        count = 0
        for line in lines[start:]:
            room -= len(line)
            if room < 0:
                break
            count += 1
        if count == 0 and file.size == 0:
            return 1  # a single line larger than the limit gets a file of its own
        return count

    def _roll_over(self, file: DayFile) -> None:
        self._retired.append(self._files.pop(file.day))
        new = self._files[file.day] = open_day_file(self._directory, file.day, file.index + 1)
        new.linked_until = self._last_attempt + self._link_check

    def _append(self, file: DayFile, lines: list[bytes]) -> tuple[int, OSError | None]:
        """One write of `lines`: how many lines reached the file whole, and the error if any."""
        prefix = b"\n" if file.needs_newline else b""
        data = memoryview(prefix + b"".join(lines))
        sent = 0
        error: OSError | None = None
        try:
            while sent < len(data):
                sent += os.write(file.fd, data[sent:])
        except OSError as exc:
            error = exc
        if sent:
            file.size += sent
            file.dirty = True
            file.needs_newline = data[sent - 1] != ord("\n")
        if error is not None:
            return complete_lines(lines, sent - len(prefix)), error
        return len(lines), None

    def _write_failed(self, day: date, exc: OSError, complete: int) -> None:
        log.error(
            "journal_write_failed",
            directory=str(self._directory),
            errno=exc.errno,
            error=exc.strerror or type(exc).__name__,
            lines_written_before_error=complete,
        )
        self._report(exc)
        file = self._files.pop(day, None)
        if file is not None:
            self._retired.append(file)

    async def _sync(self, include_open: bool) -> bool:
        """fsync retired (and, if asked, open) files per policy; close retired ones."""
        if not include_open and not self._retired:  # the usual batch: nothing to do
            return True
        retired, self._retired = self._retired, []
        targets = retired + (list(self._files.values()) if include_open else [])
        if include_open:
            self._last_sync = self._loop.time()
        ok = True
        try:
            if self._fsync != "never" and any(f.dirty for f in targets):
                await asyncio.to_thread(fsync_files, targets)
        except OSError as exc:
            ok = False
            log.error("journal_fsync_failed", errno=exc.errno, error=exc.strerror)
            self._report(exc)
            retired.extend(self._files.values())
            self._files.clear()
        finally:
            for file in retired:
                close_file(file)
        return ok

    def _drop(self, count: int) -> None:
        self.dropped_records += count
        log.error("journal_records_dropped", count=count, total=self.dropped_records)

    def _report(self, exc: BaseException) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:
            log.exception("journal_on_error_failed")
