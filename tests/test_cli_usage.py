"""`routerd usage`: offline aggregation of the journal files, as a table or JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from routerd.cli import main
from routerd.metering.usage import JournalRecord


def _record(
    ts: str, key: str, tags: tuple[str, ...], model: str, cost: int, status: int = 200
) -> bytes:
    record = JournalRecord(
        ts=datetime.fromisoformat(ts).replace(tzinfo=UTC),
        request_id=f"req_{ts}_{key}",
        key_id=key,
        user=f"user-{key}",
        tags=tags,
        ingress="chat_completions",
        model=model,
        resolved_model=model,
        status=status,
        prompt_tokens=10,
        completion_tokens=5,
        cost_pico_usd=cost,
        latency_ms=3,
        config_generation=1,
    )
    return record.to_json_line()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    usage = tmp_path / "usage"
    usage.mkdir()
    (usage / "usage-2026-11-23.jsonl").write_bytes(
        _record("2026-11-23T10:00:00", "a", ("search", "web"), "m/one", 1_000_000)
        + _record("2026-11-23T11:00:00", "b", ("search",), "m/two", 2_000_000, status=502)
    )
    (usage / "usage-2026-11-24.jsonl").write_bytes(
        _record("2026-11-24T09:00:00", "a", (), "m/one", 4_000_000)
        + b'{"ts": "2026-11-24T09:00:01.000Z", "request_id": "torn'  # a crash mid-line
    )
    path = tmp_path / "routerd.yaml"
    path.write_text(f"providers: providers.yaml\njournal: {{dir: {usage}}}\n")
    return path


def _rows(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    lines = capsys.readouterr().out.splitlines()
    return {row["group"]: row for row in map(json.loads, lines)}


def test_usage_by_key_sums_exactly_and_skips_a_torn_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "-c", str(config), "--by", "key", "--json"]) == 0
    rows = _rows(capsys)
    assert rows["a"]["requests"] == 2
    assert rows["a"]["cost_pico_usd"] == 5_000_000
    assert rows["b"]["errors"] == 1
    assert rows["a"]["prompt_tokens"] == 20


def test_usage_by_tag_counts_each_tag(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "-c", str(config), "--by", "tag", "--json"]) == 0
    rows = _rows(capsys)
    assert (rows["search"]["requests"], rows["web"]["requests"], rows["-"]["requests"]) == (2, 1, 1)


def test_usage_day_window(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["usage", "-c", str(config), "--by", "day", "--from", "2026-11-24", "--json"]
    assert main(args) == 0
    rows = _rows(capsys)
    assert list(rows) == ["2026-11-24"]
    assert rows["2026-11-24"]["cost_pico_usd"] == 4_000_000


def test_usage_table_and_bad_date(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "-c", str(config), "--by", "model"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "model",
        "requests",
        "errors",
        "prompt",
        "completion",
        "cached",
        "cost_usd",
    ]
    assert out[1].split()[0] == "m/one"  # highest cost first
    assert out[1].split()[-1] == "0.000005"
    assert main(["usage", "-c", str(config), "--from", "2026-02-30"]) == 2
