"""Parsing one journal file for replay: the per-line loop, and the job of a worker process.

Owns `ReplayResult` and `parse_file` (every parsable record of one file summed per group) and
`parse_closed_day`, the module-level pure function worker processes run (`replay_pool.py`). It
imports little (orjson) so a `spawn` worker starts fast; `replay.py` does the rest.

Speed (a cold replay on one core is ~all this loop): the file's lines come from one `BytesIO`
(a `memchr` per line, no `split` of the file into a list), and per line the loop does only what a
record needs: one `orjson.loads`, the group key and the sums; it also keeps each group's newest
`ts`, from which each key's `last_seen` is set once at the end of the file. Skipped lines are
counted on the rare failure path, the records read from the groups' request counts. Records
new enough for `recent` or `request_ids` (the last minute, the last hour) take a second path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

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
_SKIPPED = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError)


@dataclass(frozen=True, slots=True)
class _Since:
    """Where a record's `ts` starts to matter beyond its group (both are rarely reached)."""

    rate: str  # counted in `recent`
    ids: str | None  # its `request_id` collected
    either: str  # the earlier of the two


def _sum_lines(
    data: bytes, groups: dict[Any, list[Any]], bucket_len: int, since: _Since, result: ReplayResult
) -> int:
    """Sum each line of `data` into `groups` ([cost, requests, tokens, newest ts]).

    Returns how many lines were skipped (blank lines are not counted). Everything that can fail
    for a bad record (not JSON, not an object, no string `ts`, a count that is no number, an
    unhashable group) happens before anything is changed, so it is only counted as skipped.
    """
    skipped = 0
    loads, groups_get, pad, either = orjson.loads, groups.get, _PAD[bucket_len], since.either
    for line in BytesIO(data):  # its `\n`-split lines, each with its `\n` (a JSON whitespace)
        try:
            rec = loads(line)
            ts = rec["ts"]
            get = rec.get
            key_id, tags = get("key_id"), get("tags")
            key = (
                key_id, get("user"), tuple(tags) if tags else (),
                get("resolved_model") or "", ts[:bucket_len] + pad,
            )  # fmt: skip
            cost, prompt, completion = (
                get("cost_pico_usd"), get("prompt_tokens"), get("completion_tokens")
            )  # fmt: skip
            if cost.__class__ is not int:  # int() of an int is a no-op: skip the call
                cost = int(cost or 0)
            if prompt.__class__ is not int:
                prompt = int(prompt or 0)
            if completion.__class__ is not int:
                completion = int(completion or 0)
            tokens = prompt + completion
            acc = groups_get(key)
        except _SKIPPED:
            if line != b"\n":  # a blank line is not counted
                skipped += 1
            continue
        if acc is None:
            groups[key] = [cost, 1, tokens, ts]
        else:
            acc[0] += cost
            acc[1] += 1
            acc[2] += tokens
            if ts > acc[3]:
                acc[3] = ts
        if ts >= either:
            _newer(key_id, ts, tokens, rec, since, result)
    return skipped


def _newer(
    key_id: Any, ts: str, tokens: int, rec: dict[str, Any], since: _Since, result: ReplayResult
) -> None:
    """A record of the last minute (`recent`) or after `ids_since` (`request_ids`)."""
    if since.ids is not None and ts >= since.ids:
        result.request_ids.add(str(rec.get("request_id")))
    if ts >= since.rate and key_id is not None:
        got = result.recent.get(key_id, (0, 0))
        result.recent[key_id] = (got[0] + 1, got[1] + tokens)


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
    groups: dict[Any, list[Any]] = {}
    either = rate_since if ids_since is None else min(rate_since, ids_since)
    skipped = _sum_lines(data, groups, bucket_len, _Since(rate_since, ids_since, either), result)
    result.lines += sum(acc[1] for acc in groups.values())  # every record counted is in a group
    result.skipped += skipped
    last_seen = result.last_seen  # each key's newest `ts`: the newest of its groups'
    for key, acc in groups.items():
        key_id, newest = key[0], acc[3]
        if key_id is not None and newest > last_seen.get(key_id, ""):
            last_seen[key_id] = newest
    return {key: [acc[0], acc[1], acc[2]] for key, acc in groups.items()}


# groups, lines, skipped, last_seen (a string: `_Group` is only imported for type checking)
Parsed: TypeAlias = "tuple[dict[_Group, list[int]], int, int, dict[str, str]]"


def parse_closed_day(path: Path, rate_since: str) -> Parsed | None:
    """One closed day's file summed per day (a worker process's job): `None` if it vanished."""
    mark = ReplayResult()
    groups = parse_file(path, 10, mark, None, rate_since)
    return None if groups is None else (groups, mark.lines, mark.skipped, mark.last_seen)
