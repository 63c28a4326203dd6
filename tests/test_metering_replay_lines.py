"""Replay of odd journal lines: what is counted, what is skipped, cold and from summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from routerd.metering.replay import ReplayResult, budget_targets, replay, usage_targets
from routerd.metering.summaries import load_summary
from routerd.metering.usage import format_ts
from tests.test_metering_ledger import budget, rules_of

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
CLOSED, TODAY = "2026-11-22", "2026-11-24"
MONTH = rules_of(budget("month", 1, "monthly"))


def _line(**fields: Any) -> bytes:
    return orjson.dumps(fields) + b"\n"


def _closed_day() -> bytes:
    """3 records counted, 9 lines skipped, 3 blank lines (not counted), a torn last line."""
    return b"".join(
        [
            b"\n",
            _line(
                ts=f"{CLOSED}T08:00:00.000Z",
                request_id="r1",
                key_id="k1",
                user="alice",
                tags=["search"],
                resolved_model="m/a",
                cost_pico_usd=100,
                prompt_tokens=10,
                completion_tokens=5,
            ),
            b"\n\n",
            _line(key_id="k1", cost_pico_usd=1),  # no ts
            _line(ts=None, key_id="k1", cost_pico_usd=1),
            b"[1, 2]\n",
            b'"text"\n',
            b"null\n",  # JSON, but no record
            _line(ts=f"{CLOSED}T09:00:00.000Z"),  # only a ts: counted, costs nothing, no key
            _line(
                ts=f"{CLOSED}T10:00:00.000Z", key_id="k2", cost_pico_usd="250", prompt_tokens="3"
            ),
            _line(ts=f"{CLOSED}T11:00:00.000Z", key_id="k2", cost_pico_usd="lots"),
            _line(ts=f"{CLOSED}T12:00:00.000Z", key_id=["k2"], cost_pico_usd=1),
            _line(ts=f"{CLOSED}T13:00:00.000Z", key_id="k1").rstrip(b"\n")
            + b","
            + _line(ts=f"{CLOSED}T13:00:01.000Z", key_id="k1"),  # two records glued on a line
            b'{"ts": "' + CLOSED.encode() + b'T23:00:00.000Z", "key_id": "k1", "cost_pico_u',
        ]
    )


def _today() -> bytes:
    return b"".join(
        [
            _line(
                ts=format_ts(NOW - timedelta(hours=2)),
                request_id="r-old",
                key_id="k2",
                cost_pico_usd=11,
            ),
            b"\n",
            _line(
                ts=format_ts(NOW - timedelta(seconds=30)),
                request_id="r-now",
                key_id="k1",
                cost_pico_usd=7,
                prompt_tokens=4,
                completion_tokens=1,
            ),
            b'{"ts": "2026-11-24T11:59:59.000Z", "key_id": "k1", "request',
        ]
    )


def _journal(directory: Path) -> None:
    directory.mkdir()
    (directory / f"usage-{CLOSED}.jsonl").write_bytes(_closed_day())
    (directory / "usage-2026-11-23.jsonl").symlink_to(directory / "gone.jsonl")  # vanished
    (directory / f"usage-{TODAY}.jsonl").write_bytes(_today())


def _replayed(directory: Path) -> ReplayResult:
    targets = budget_targets(MONTH.values(), NOW)
    targets += usage_targets(["k1", "k2"], NOW)
    return replay(directory, targets, NOW, NOW - timedelta(hours=1))


def _spend(result: ReplayResult) -> dict[str, int]:
    return {counter: cost for (counter, _start), cost in result.spend.items()}


def _fields(result: ReplayResult) -> tuple[Any, ...]:
    return (
        result.spend, result.recent, result.request_ids, result.last_seen,
        result.lines, result.skipped, result.files,
    )  # fmt: skip


def test_odd_lines_are_skipped_or_counted_the_same_cold_and_from_summaries(
    tmp_path: Path,
) -> None:
    _journal(tmp_path / "j")
    cold = _replayed(tmp_path / "j")
    assert (cold.lines, cold.skipped, cold.files) == (5, 10, 2)
    spend = _spend(cold)
    assert spend[MONTH["month"].counter] == 100 + 250 + 11 + 7
    assert spend["usage:key:k1:monthly"] == 107 and spend["usage:key:k1:daily"] == 7
    assert spend["usage:key:k2:monthly"] == 261 and spend["usage:key:k2:daily"] == 11
    assert cold.last_seen == {
        "k1": format_ts(NOW - timedelta(seconds=30)),
        "k2": format_ts(NOW - timedelta(hours=2)),
    }
    assert cold.recent == {"k1": (1, 5)} and cold.request_ids == {"r-now"}
    summary = load_summary(tmp_path / "j" / f"usage-{CLOSED}.jsonl")
    assert summary is not None and (summary.lines, summary.skipped) == (3, 9)
    assert summary.last_seen == {"k1": f"{CLOSED}T08:00:00.000Z", "k2": f"{CLOSED}T10:00:00.000Z"}
    assert list(summary.groups.items()) == [
        (("k1", "alice", ("search",), "m/a", f"{CLOSED}T00:00:00.000Z"), [100, 1, 15]),
        ((None, None, (), "", f"{CLOSED}T00:00:00.000Z"), [0, 1, 0]),
        (("k2", None, (), "", f"{CLOSED}T00:00:00.000Z"), [250, 1, 3]),
    ]
    assert _fields(_replayed(tmp_path / "j")) == _fields(cold)  # warm: the closed day's summary
