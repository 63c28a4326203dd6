"""Parsing one journal file for replay: the per-line loop, and the job of a worker process.

Owns `ReplayResult` and `parse_file` (every parsable record of one file summed per group) and
`parse_closed_day`, the module-level pure function worker processes run (`replay_pool.py`). It
imports little (orjson) so a `spawn` worker starts fast; `replay.py` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import orjson

if TYPE_CHECKING:
    from routerd.metering.summaries import Group as _Group


@dataclass(slots=True)
class ReplayResult:
    spend: dict[tuple[str, datetime | None], int] = field(default_factory=dict)
    recent: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (requests, tokens)
    request_ids: set[str] = field(default_factory=set)
    last_seen: dict[str, str] = field(default_factory=dict)  # key id -> newest `ts` replayed
    lines: int = 0
    skipped: int = 0
    files: int = 0


_PAD = {10: "T00:00:00.000Z", 16: ":00.000Z", 24: ""}


def parse_file(
    path: Path, bucket_len: int, result: ReplayResult, ids_since: str | None, rate_since: str
) -> dict[_Group, list[int]] | None:
    """Sum every parsable record of one file into its group: [cost_pico, requests, tokens].

    A group's bucket is the start of its time slice as a full timestamp. The last minute's
    requests and tokens per key go to `result.recent`. `None` if the file vanished.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    groups: dict[_Group, list[int]] = {}
    last_seen = result.last_seen
    loads, invalid, pad = orjson.loads, orjson.JSONDecodeError, _PAD[bucket_len]
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rec = loads(line)
            ts = rec["ts"]
            key = (
                rec.get("key_id"), rec.get("user"), tuple(rec.get("tags") or ()),
                rec.get("resolved_model") or "", ts[:bucket_len] + pad,
            )  # fmt: skip
            cost = int(rec.get("cost_pico_usd") or 0)
            tokens = int(rec.get("prompt_tokens") or 0) + int(rec.get("completion_tokens") or 0)
        except (invalid, KeyError, TypeError, ValueError, AttributeError):
            result.skipped += 1
            continue
        result.lines += 1
        if key[0] is not None and ts > last_seen.get(key[0], ""):
            last_seen[key[0]] = ts
        if ids_since is not None and ts >= ids_since:
            result.request_ids.add(str(rec.get("request_id")))
        if ts >= rate_since and key[0] is not None:
            got = result.recent.get(key[0], (0, 0))
            result.recent[key[0]] = (got[0] + 1, got[1] + tokens)
        acc = groups.get(key)
        if acc is None:
            groups[key] = [cost, 1, tokens]
        else:
            acc[0] += cost
            acc[1] += 1
            acc[2] += tokens
    return groups


# groups, lines, skipped, last_seen (a string: `_Group` is only imported for type checking)
Parsed: TypeAlias = "tuple[dict[_Group, list[int]], int, int, dict[str, str]]"


def parse_closed_day(path: Path, rate_since: str) -> Parsed | None:
    """One closed day's file summed per day (a worker process's job): `None` if it vanished."""
    mark = ReplayResult()
    groups = parse_file(path, 10, mark, None, rate_since)
    return None if groups is None else (groups, mark.lines, mark.skipped, mark.last_seen)
