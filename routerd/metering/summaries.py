"""Per-day summaries of closed journal files: a derived cache that makes replay take seconds.

A summary holds one journal file's records summed per (key, user, tags, model) for its UTC day,
plus the file's size and modification time when it was made. Replay uses it instead of parsing
the file when the file is closed (an earlier day) and unchanged; otherwise it parses the file and
writes a fresh summary. The journal stays the only source of truth: a summary that is missing,
stale, unreadable or of another version is ignored and rebuilt, and deleting the folder is always
safe. Summaries live in `<journal dir>/.summaries/`, out of the way of `usage-*.jsonl` globs of
log shippers; writes are atomic (temp file, rename) and a failed write only logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

log = structlog.get_logger(__name__)
VERSION = 1
DIRECTORY = ".summaries"

Group = tuple[str | None, str | None, tuple[str, ...], str, str]


@dataclass(frozen=True, slots=True)
class Summary:
    groups: dict[Group, list[int]]  # group -> [cost_pico, requests, tokens]
    lines: int
    skipped: int
    last_seen: dict[str, str]  # key id -> newest `ts` in the file


def _summary_path(journal_file: Path) -> Path:
    return journal_file.parent / DIRECTORY / (journal_file.name + ".sum.json")


def _identity(journal_file: Path) -> tuple[int, int] | None:
    try:
        stat = journal_file.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def load_summary(journal_file: Path) -> Summary | None:
    """The file's summary if it exists and was made from the file as it is now."""
    identity = _identity(journal_file)
    try:
        doc = orjson.loads(_summary_path(journal_file).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        return None
    if identity is None or [doc.get("size"), doc.get("mtime_ns")] != list(identity):
        return None
    try:
        groups: dict[Group, list[int]] = {
            (key, user, tuple(tags), model, bucket): [int(cost), int(requests), int(tokens)]
            for key, user, tags, model, bucket, cost, requests, tokens in doc["groups"]
        }
        last_seen = {str(k): str(v) for k, v in dict(doc["last_seen"]).items()}
        return Summary(groups, int(doc["lines"]), int(doc["skipped"]), last_seen)
    except (KeyError, TypeError, ValueError):
        return None


def write_summary(journal_file: Path, summary: Summary) -> None:
    """Save `summary` for `journal_file` as it is now; failures are logged, never raised."""
    identity = _identity(journal_file)
    if identity is None:
        return
    doc = {
        "version": VERSION,
        "source": journal_file.name,
        "size": identity[0],
        "mtime_ns": identity[1],
        "lines": summary.lines,
        "skipped": summary.skipped,
        "groups": [[*group, *sums] for group, sums in summary.groups.items()],
        "last_seen": summary.last_seen,
    }
    target = _summary_path(journal_file)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(exist_ok=True)
        temp.write_bytes(orjson.dumps(doc))
        os.replace(temp, target)
    except OSError as exc:
        log.warning("journal_summary_not_written", file=journal_file.name, error=str(exc))
        temp.unlink(missing_ok=True)
