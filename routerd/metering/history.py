"""Newest-first reads of the usage journal for one user (`GET /v1/users/{id}/usage`).

Reads day by day from the newest journal file backwards and stops as soon as `skip + limit`
matching records are found, so a recent page costs only the recent files. Blocking file I/O: call
it in a thread.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from routerd.metering.journal import iter_journal, journal_files


def _days(directory: Path) -> list[date]:
    """The UTC days that have journal files, newest first (`usage-YYYY-MM-DD[.N].jsonl`)."""
    days = {date.fromisoformat(path.name[6:16]) for path in journal_files(directory)}
    return sorted(days, reverse=True)


def user_records(directory: Path, user: str, skip: int, limit: int) -> list[dict[str, Any]]:
    """Journal records whose `user` is `user`, newest first, after skipping `skip` of them."""
    wanted = skip + limit
    found: list[dict[str, Any]] = []
    for day in _days(directory):
        matching = [r for r in iter_journal(directory, day, day) if r.get("user") == user]
        matching.sort(key=lambda r: str(r.get("ts", "")), reverse=True)
        found.extend(matching)
        if len(found) >= wanted:
            break
    return found[skip:wanted]
