"""The ledger on its own: reservations against budget windows with an injected clock, settle,
per-key usage, journal replay (torn lines, window filtering) and rebuild on a budget change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from routerd.config.model import BudgetConfig, BudgetScope, KeyConfig, RateLimits
from routerd.metering.budgets import BudgetRule, RuleIndex, build_rules, model_rules
from routerd.metering.ledger import BudgetRefusal, Ledger, Reservation, Settled
from routerd.metering.ratelimit import RatePlan, RateScope
from routerd.metering.replay import budget_targets, replay
from routerd.metering.store import InMemoryStore
from routerd.metering.usage import JournalRecord

USD = 10**12


class Clock:
    """A settable UTC time, read by the ledger as epoch seconds."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def budget(
    id: str, limit: float, period: str = "daily", scope: BudgetScope | None = None
) -> BudgetConfig:
    seconds = int(period[:-1]) if period.endswith("s") else None
    return BudgetConfig(id, limit, period, seconds, scope or BudgetScope("global"))


def key(id: str, user: str | None = None, tags: tuple[str, ...] = (), budgets=()) -> KeyConfig:  # type: ignore[no-untyped-def]
    return KeyConfig(id=id, sha256="0" * 64, user=user, tags=tags, budgets=tuple(budgets))


def done(cost: int, key_id: str = "k1", model: str = "m/a", rid: str = "r") -> Settled:
    return Settled(rid, key_id, "alice", ("search",), model, cost)


async def reserve(
    ledger: Ledger, rules: Sequence[BudgetRule], amount: int
) -> Reservation | BudgetRefusal:
    """A budget-only admission: `Ledger.admit` for a key without rate limits."""
    held = (await ledger.admit(rules, amount)).held
    assert held is not None  # no rate limit to refuse it
    return held


async def test_reserve_refuses_when_the_worst_case_does_not_fit() -> None:
    rules = build_rules([budget("b", 1.0)], [])
    ledger = Ledger(InMemoryStore(), Clock(datetime(2026, 11, 24, 12, tzinfo=UTC)))
    ledger.use_rules(rules)
    first = await reserve(ledger, [rules["b"]], 600_000_000_000)
    assert isinstance(first, Reservation)
    second = await reserve(ledger, [rules["b"]], 600_000_000_000)
    assert isinstance(second, BudgetRefusal)
    assert (second.rule.id, second.reserved, second.spent) == ("b", 600_000_000_000, 0)
    assert second.window.end == datetime(2026, 11, 25, tzinfo=UTC)
    await ledger.settle(first, done(100_000_000_000))  # the exact cost frees the rest
    assert isinstance(await reserve(ledger, [rules["b"]], 600_000_000_000), Reservation)
    status = await ledger.status(rules["b"])
    assert (status.spent, status.reserved) == (100_000_000_000, 600_000_000_000)


async def test_daily_window_resets_at_utc_midnight_and_a_late_settle_stays_in_its_window() -> None:
    clock = Clock(datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC))
    rules = build_rules([budget("day", 1.0)], [])
    ledger = Ledger(InMemoryStore(), clock)
    ledger.use_rules(rules)
    held = await reserve(ledger, [rules["day"]], USD // 2)
    assert isinstance(held, Reservation)
    clock.now = datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC)  # the boundary itself: a new window
    status = await ledger.status(rules["day"])
    assert (status.spent, status.reserved) == (0, 0)
    assert status.window.start == datetime(2026, 11, 25, tzinfo=UTC)
    await ledger.settle(held, done(USD // 4))
    assert (await ledger.status(rules["day"])).spent == 0  # settled into the 24th
    clock.now -= timedelta(seconds=1)
    assert (await ledger.status(rules["day"])).spent == USD // 4


async def test_seconds_period_windows_are_epoch_aligned() -> None:
    clock = Clock(datetime(2026, 11, 24, 10, 0, 59, tzinfo=UTC))
    rules = build_rules([budget("minute", 0.000001, "60s")], [])
    ledger = Ledger(InMemoryStore(), clock)
    ledger.use_rules(rules)
    held = await reserve(ledger, [rules["minute"]], 1_000_000)
    assert isinstance(held, Reservation)
    await ledger.settle(held, done(1_000_000))
    assert isinstance(await reserve(ledger, [rules["minute"]], 1), BudgetRefusal)
    clock.now += timedelta(seconds=1)  # 10:01:00 starts a new 60 s window
    assert isinstance(await reserve(ledger, [rules["minute"]], 1_000_000), Reservation)


async def test_a_table_owned_rule_set_moves_to_the_new_window_when_one_rolls_over() -> None:
    clock = Clock(datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC))
    rules = build_rules([budget("minute", 1.0, "60s"), budget("day", 1.0)], [])
    ledger = Ledger(InMemoryStore(), clock)
    ledger.use_rules(rules)
    owned = (rules["minute"], rules["day"])  # a key entry's tuple: its holds are reused
    for _ in range(2):
        assert isinstance(await reserve(ledger, owned, USD // 4), Reservation)
    assert isinstance(await reserve(ledger, owned, USD // 4), Reservation)
    assert isinstance(await reserve(ledger, owned, USD // 2), BudgetRefusal)
    await ledger.settle(None, done(USD // 8))
    assert await ledger.key_usage("k1") == {
        "daily": USD // 8, "weekly": USD // 8, "monthly": USD // 8, "total": USD // 8,
    }  # fmt: skip
    clock.now += timedelta(seconds=1)  # midnight: both windows roll over
    assert isinstance(await reserve(ledger, owned, USD), Reservation)
    assert (await ledger.status(rules["day"])).reserved == USD
    await ledger.settle(None, done(USD // 8))
    usage = await ledger.key_usage("k1")
    assert (usage["daily"], usage["total"]) == (USD // 8, USD // 4)


async def test_admission_with_rate_limits_is_all_or_nothing_and_settlement_gives_back() -> None:
    clock = Clock(datetime(2026, 11, 24, 12, tzinfo=UTC))
    rules = build_rules([budget("b", 1.0)], [])
    store = InMemoryStore()
    ledger = Ledger(store, clock)
    ledger.use_rules(rules)
    plan = RatePlan([RateScope("key:k1", RateLimits(rpm=10, tpm=1000, concurrency=1))])
    refused = await ledger.admit((rules["b"],), 2 * USD, plan, 100)
    assert isinstance(refused.held, BudgetRefusal)
    assert refused.rate is not None and refused.rate.allowed  # the limits had room ...
    assert refused.rate.requests is not None and refused.rate.requests.remaining == 10
    snapshot = await store.snapshot()  # ... and gave none of it
    assert snapshot["concurrency"] == {} and snapshot["reservations"] == 0
    admitted = await ledger.admit((rules["b"],), USD // 2, plan, 100)
    held = admitted.held
    assert isinstance(held, Reservation) and admitted.rate is not None
    assert admitted.rate.tokens is not None and admitted.rate.tokens.remaining == 900
    busy = await ledger.admit((rules["b"],), USD // 4, plan, 100)
    assert busy.held is None and busy.rate is not None and busy.rate.failed == "concurrency"
    assert (await ledger.status(rules["b"])).reserved == USD // 2  # the busy one held nothing
    await ledger.settle(held, done(USD // 10), tokens=40)
    snapshot = await store.snapshot()
    assert snapshot["concurrency"] == {} and snapshot["reservations"] == 0
    assert [b["used_units"] for b in snapshot["rate_buckets"]] == [1, 40]
    assert (await ledger.status(rules["b"])).spent == USD // 10


def test_scopes_and_listing_decide_which_budgets_apply() -> None:
    budgets = [
        budget("g", 1, scope=BudgetScope("global")),
        budget("k", 1, scope=BudgetScope("key", "k1")),
        budget("u", 1, scope=BudgetScope("user", "alice")),
        budget("t", 1, scope=BudgetScope("tag", "search")),
        budget("m", 1, scope=BudgetScope("model", "openai/gpt-5*")),
        budget("pool", 1, scope=BudgetScope("listed")),
        budget("orphan", 1, scope=BudgetScope("listed")),
    ]
    k1 = key("k1", "alice", ("search",), ["pool"])
    k2 = key("k2", "bob")
    rules = build_rules(budgets, [k1, k2])
    assert sorted(r.id for r in RuleIndex(rules).for_key(k1)) == ["g", "k", "pool", "t", "u"]
    assert sorted(r.id for r in RuleIndex(rules).for_key(k2)) == ["g"]
    assert [r.id for r in model_rules("openai/gpt-5-mini", rules)] == ["m"]
    assert model_rules("openai/gpt-4.1", rules) == ()
    assert rules["k"].error_code.name == "key_limit_exceeded"
    assert rules["pool"].error_code.name == "key_limit_exceeded"
    assert rules["t"].error_code.name == "insufficient_credits"


def test_counter_id_changes_with_period_or_scope_but_not_with_the_limit() -> None:
    base = build_rules([budget("b", 1)], [])["b"].counter
    assert build_rules([budget("b", 99)], [])["b"].counter == base
    assert build_rules([budget("b", 1, "weekly")], [])["b"].counter != base
    tagged = budget("b", 1, scope=BudgetScope("tag", "x"))
    assert build_rules([tagged], [])["b"].counter != base


def write_journal(directory: Path, rows: list[tuple[datetime, str, str, int]]) -> None:
    """(ts, key_id, resolved_model, cost) rows as real journal lines."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, (ts, key_id, model, cost) in enumerate(rows):
        record = JournalRecord(
            ts=ts, request_id=f"req-{i}", key_id=key_id, user="alice", tags=("search",),
            ingress="chat_completions", model=model, resolved_model=model, status=200,
            latency_ms=1, config_generation=1, cost_pico_usd=cost, prompt_tokens=10,
            completion_tokens=5,
        )  # fmt: skip
        path = directory / f"usage-{ts.date().isoformat()}.jsonl"
        with path.open("ab") as handle:
            handle.write(record.to_json_line())


def rules_of(*budgets: BudgetConfig) -> dict[str, BudgetRule]:
    return build_rules(budgets, [])


def test_replay_sums_only_records_inside_each_window_and_skips_a_torn_line(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    write_journal(
        tmp_path,
        [
            (datetime(2026, 11, 23, 23, 59, 59, 999000, tzinfo=UTC), "k1", "m/a", 1),  # yesterday
            (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), "k1", "m/a", 10),
            (datetime(2026, 11, 24, 11, 59, tzinfo=UTC), "k2", "m/b", 100),
            (datetime(2026, 11, 2, 8, tzinfo=UTC), "k1", "m/a", 1000),  # this month, not week
        ],
    )
    with (tmp_path / "usage-2026-11-24.jsonl").open("ab") as handle:
        handle.write(b'{"ts": "2026-11-24T11:00:00.000Z", "key_id": "k1", "cost_pico_u')  # torn
    rules = rules_of(
        budget("day", 1),
        budget("week", 1, "weekly"),
        budget("month", 1, "monthly"),
        budget("k1-day", 1, scope=BudgetScope("key", "k1")),
        budget("model-b", 1, "total", BudgetScope("model", "m/b")),
    )
    result = replay(tmp_path, budget_targets(rules.values(), now), now)
    spend = {counter.split("#")[0]: v for (counter, _), v in result.spend.items()}
    assert spend == {
        "budget:day": 110,
        "budget:week": 111,
        "budget:month": 1111,
        "budget:k1-day": 10,
        "budget:model-b": 100,
    }
    assert (result.lines, result.skipped) == (4, 1)


async def test_rebuild_fills_budgets_and_key_usage_from_the_journal(tmp_path: Path) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    write_journal(
        tmp_path,
        [
            (datetime(2026, 11, 24, 1, tzinfo=UTC), "k1", "m/a", 7),
            (datetime(2026, 11, 20, 1, tzinfo=UTC), "k1", "m/a", 5),  # last week, this month
        ],
    )
    rules = rules_of(budget("day", 1))
    ledger = Ledger(InMemoryStore(), Clock(now))
    ledger.use_rules(rules)
    await ledger.rebuild(tmp_path, rules.values(), ["k1", "k2"])
    assert (await ledger.status(rules["day"])).spent == 7
    assert await ledger.key_usage("k1") == {"daily": 7, "weekly": 7, "monthly": 12, "total": 12}
    assert await ledger.key_usage("k2") == {"daily": 0, "weekly": 0, "monthly": 0, "total": 0}


async def test_a_changed_period_is_rebuilt_and_settlements_during_the_scan_are_kept(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)  # a Tuesday
    write_journal(
        tmp_path,
        [
            (datetime(2026, 11, 24, 1, tzinfo=UTC), "k1", "m/a", 7),
            (datetime(2026, 11, 23, 1, tzinfo=UTC), "k1", "m/a", 5),  # Monday: same week
        ],
    )
    daily = rules_of(budget("b", 1))
    ledger = Ledger(InMemoryStore(), Clock(now))
    ledger.use_rules(daily)
    await ledger.rebuild(tmp_path, daily.values(), [])
    assert (await ledger.status(daily["b"])).spent == 7
    weekly = rules_of(budget("b", 1, "weekly"))
    assert ledger.new_rules(weekly) == [weekly["b"]]

    async def flush_and_settle() -> None:  # a request finishes while the reload scans
        await ledger.settle(None, done(3, rid="late"))

    await ledger.rebuild_for_reload(tmp_path, ledger.new_rules(weekly), flush_and_settle)
    ledger.use_rules(weekly)
    assert (await ledger.status(weekly["b"])).spent == 7 + 5 + 3
    assert ledger.new_rules(weekly) == []


async def test_a_request_admitted_before_a_reload_also_counts_in_the_new_budget() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    old = rules_of(budget("b", 1))
    ledger = Ledger(InMemoryStore(), Clock(now))
    ledger.use_rules(old)
    held = await reserve(ledger, [old["b"]], 100)
    assert isinstance(held, Reservation)
    new = rules_of(budget("b", 1, "weekly"))
    ledger.use_rules(new)  # swapped while the request was in flight
    await ledger.settle(held, done(40))
    assert (await ledger.status(new["b"])).spent == 40


def test_a_budget_without_scope_that_no_key_lists_is_a_load_warning(tmp_path: Path) -> None:
    from routerd.config.load import load_all
    from tests.conftest import write_config

    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    (tmp_path / "cfg" / "budgets.yaml").write_text(
        "budgets:\n  - {id: orphan, limit_usd: 5, period: daily}\n"
    )
    loaded = load_all(config)
    assert "budget orphan has no scope and no key lists it: it counts nothing" in loaded.warnings


def test_closed_days_are_summarized_once_and_a_changed_file_is_parsed_again(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    rows = [(datetime(2026, 11, d, h, tzinfo=UTC), f"k{h % 3}", "m/a", d * 100 + h) for d in
            range(1, 25) for h in (0, 13, 23)]  # fmt: skip
    write_journal(tmp_path, rows)
    rules = rules_of(budget("month", 1, "monthly"), budget("week", 1, "weekly"),
                     budget("k1", 1, "monthly", BudgetScope("key", "k1")))  # fmt: skip
    targets = budget_targets(rules.values(), now)
    cold = replay(tmp_path, targets, now)
    summaries = sorted(p.name for p in (tmp_path / ".summaries").iterdir())
    assert len(summaries) == 23 and "usage-2026-11-24.jsonl.sum.json" not in summaries
    warm = replay(tmp_path, targets, now)
    assert warm.spend == cold.spend and warm.lines == cold.lines == len(rows)
    expected_month = sum(cost for _, _, _, cost in rows)
    spend = {counter.split("#")[0]: v for (counter, _), v in cold.spend.items()}
    assert spend["budget:month"] == expected_month
    assert spend["budget:week"] == sum(c for ts, _, _, c in rows if ts.day >= 23)
    write_journal(tmp_path, [(datetime(2026, 11, 3, 5, tzinfo=UTC), "k1", "m/a", 7)])
    again = replay(tmp_path, targets, now)
    spend = {counter.split("#")[0]: v for (counter, _), v in again.spend.items()}
    assert spend["budget:month"] == expected_month + 7
    assert spend["budget:k1"] == sum(c for _, k, _, c in rows if k == "k1") + 7


def test_a_seconds_window_inside_a_day_is_exact_without_day_summaries(tmp_path: Path) -> None:
    now = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    write_journal(
        tmp_path,
        [
            (datetime(2026, 11, 24, 11, 59, 59, tzinfo=UTC), "k1", "m/a", 1),
            (datetime(2026, 11, 24, 12, 0, tzinfo=UTC), "k1", "m/a", 10),
            (datetime(2026, 11, 24, 12, 59, tzinfo=UTC), "k1", "m/a", 100),
        ],
    )
    rules = rules_of(budget("hour", 1, "3600s"), budget("odd", 1, "90s"))
    result = replay(tmp_path, budget_targets(rules.values(), now), now)
    spend = {counter.split("#")[0]: v for (counter, _), v in result.spend.items()}
    assert spend == {"budget:hour": 110}  # 12:29:30-12:31:00 holds nothing
