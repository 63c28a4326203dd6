"""The usage journal's files: naming, scanning and reading them back, and the open-file
primitives the writer (`journal.py`) appends with.

Owns `usage-YYYY-MM-DD.jsonl` (UTC day of each record's `ts`) and the rollover files
`usage-YYYY-MM-DD.N.jsonl` under one directory. `journal_files` and `iter_journal` read the files
back, skipping torn or invalid lines. `DayFile` is one open file as the writer knows it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import structlog

_READ_CHUNK_BYTES = 8 * 1024 * 1024
_FILE_NAME = re.compile(r"^usage-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$")
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

log = structlog.get_logger("routerd.metering.journal")


def journal_file_name(day: date, index: int = 0) -> str:
    """`usage-2026-11-24.jsonl` for index 0, `usage-2026-11-24.<index>.jsonl` after rollover."""
    suffix = f".{index}" if index else ""
    return f"usage-{day.isoformat()}{suffix}.jsonl"


def _parse_file_name(name: str) -> tuple[date, int] | None:
    match = _FILE_NAME.match(name)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return day, int(match.group(2) or 0)


def scan_directory(directory: Path) -> list[tuple[date, int, Path]]:
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        parsed = _parse_file_name(name)
        if parsed is not None:
            found.append((parsed[0], parsed[1], directory / name))
    return sorted(found)


def journal_files(
    directory: Path, since: date | None = None, until: date | None = None
) -> list[Path]:
    """Journal files whose day is within [since, until] (inclusive), by day then rollover index."""
    return [path for _day, path in journal_days(directory, since, until)]


def journal_days(
    directory: Path, since: date | None = None, until: date | None = None
) -> list[tuple[date, Path]]:
    """(UTC day, path) of the journal files within [since, until], by day then rollover index."""
    return [
        (day, path)
        for day, _index, path in scan_directory(directory)
        if (since is None or day >= since) and (until is None or day <= until)
    ]


def _iter_file(path: Path) -> Iterator[dict[str, Any]]:
    loads, invalid = orjson.loads, orjson.JSONDecodeError
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        rest = b""
        while True:
            chunk = handle.read(_READ_CHUNK_BYTES)
            lines = (rest + chunk).split(b"\n") if chunk else [rest]
            rest = lines.pop() if chunk else b""
            for line in lines:
                if not line:
                    continue
                try:
                    value = loads(line)
                except invalid:
                    continue
                if isinstance(value, dict):
                    yield value
            if not chunk:
                return


def iter_journal(
    directory: Path, since: date | None = None, until: date | None = None
) -> Iterator[dict[str, Any]]:
    """Every parsable record of the journal files in [since, until]; torn lines are skipped."""
    for path in journal_files(directory, since, until):
        yield from _iter_file(path)


@dataclass(slots=True)
class DayFile:
    """One open journal file: its descriptor, identity and what the writer knows of its end."""

    day: date
    index: int
    path: Path
    fd: int
    dev: int
    ino: int
    size: int
    needs_newline: bool
    dirty: bool = False
    linked_until: float = 0.0  # loop time until which the path is not checked again


def open_day_file(directory: Path, day: date, index: int) -> DayFile:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / journal_file_name(day, index)
    fd = os.open(path, _OPEN_FLAGS, 0o644)
    try:
        stat = os.fstat(fd)
        tail = os.pread(fd, 1, stat.st_size - 1) if stat.st_size else b"\n"
    except OSError:
        os.close(fd)
        raise
    return DayFile(day, index, path, fd, stat.st_dev, stat.st_ino, stat.st_size, tail != b"\n")


def still_linked(file: DayFile) -> bool:
    try:
        stat = os.stat(file.path)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == (file.dev, file.ino)


def complete_lines(lines: list[bytes], nbytes: int) -> int:
    """How many of `lines` lie entirely within the first `nbytes` bytes of their concatenation."""
    count = 0
    for line in lines:
        nbytes -= len(line)
        if nbytes < 0:
            break
        count += 1
    return count


def fsync_files(files: list[DayFile]) -> None:
    for file in files:
        if file.dirty:
            os.fsync(file.fd)
            file.dirty = False


def close_file(file: DayFile) -> None:
    try:
        os.close(file.fd)
    except OSError as exc:
        log.warning("journal_close_failed", path=str(file.path), error=str(exc))
