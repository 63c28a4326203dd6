"""Budget windows: UTC boundaries of every period, with explicit clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from routerd.metering.windows import (
    EPOCH,
    Window,
    in_window,
    period_length_seconds,
    previous_window,
    resets_at,
    seconds_until_reset,
    window_for,
)


def utc(*parts: int) -> datetime:
    year, month, day, *clock = parts
    hour, minute, second, micro = [*clock, 0, 0, 0, 0][:4]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


LAST_US = timedelta(microseconds=1)


def test_daily_last_microsecond_and_midnight() -> None:
    before = window_for("daily", None, utc(2026, 11, 24, 23, 59, 59, 999999))
    assert before == Window(utc(2026, 11, 24), utc(2026, 11, 25))
    after = window_for("daily", None, utc(2026, 11, 25))
    assert after == Window(utc(2026, 11, 25), utc(2026, 11, 26))
    assert resets_at(before) == after.start


def test_daily_across_year_end() -> None:
    assert window_for("daily", None, utc(2026, 12, 31, 12)) == Window(
        utc(2026, 12, 31), utc(2027, 1, 1)
    )


def test_weekly_iso_week_across_year_boundary() -> None:
    # 2027-01-01 is a Friday: its ISO week (2026-W53) started on Monday 2026-12-28.
    expected = Window(utc(2026, 12, 28), utc(2027, 1, 4))
    assert window_for("weekly", None, utc(2026, 12, 28)) == expected
    assert window_for("weekly", None, utc(2027, 1, 1, 8)) == expected
    assert window_for("weekly", None, utc(2027, 1, 4) - LAST_US) == expected
    assert window_for("weekly", None, utc(2027, 1, 4)).start == utc(2027, 1, 4)


def test_weekly_starts_monday() -> None:
    window = window_for("weekly", None, utc(2026, 11, 29, 23, 59))  # a Sunday
    assert window.start is not None and window.start.weekday() == 0
    assert window == Window(utc(2026, 11, 23), utc(2026, 11, 30))


def test_monthly_december_rolls_into_january() -> None:
    window = window_for("monthly", None, utc(2026, 12, 31, 23, 59, 59, 999999))
    assert window == Window(utc(2026, 12, 1), utc(2027, 1, 1))
    assert window_for("monthly", None, utc(2027, 1, 1)) == Window(utc(2027, 1, 1), utc(2027, 2, 1))


@pytest.mark.parametrize(
    ("year", "end_day"),
    [(2024, 29), (2023, 28), (2000, 29), (2100, 28)],
)
def test_monthly_february_with_and_without_leap_day(year: int, end_day: int) -> None:
    window = window_for("monthly", None, utc(year, 2, end_day, 23, 59, 59))
    assert window == Window(utc(year, 2, 1), utc(year, 3, 1))
    assert window.end is not None and window.start is not None
    assert (window.end - window.start).days == end_day


def test_total_never_resets() -> None:
    window = window_for("total", None, utc(2026, 11, 24))
    assert window == Window(None, None)
    assert resets_at(window) is None
    assert seconds_until_reset(window, utc(2026, 11, 24)) is None
    assert in_window(utc(1999, 1, 1), window) and in_window(utc(2999, 1, 1), window)
    assert previous_window("total", None, window) is None


def test_seconds_windows_are_epoch_aligned() -> None:
    now = EPOCH + timedelta(seconds=100, microseconds=5)
    assert window_for("7s", 7, now) == Window(
        EPOCH + timedelta(seconds=98), EPOCH + timedelta(seconds=105)
    )
    hour = window_for("3600s", 3600, utc(2026, 11, 24, 10, 59, 59))
    assert hour == Window(utc(2026, 11, 24, 10), utc(2026, 11, 24, 11))
    # the boundary itself opens the next window
    assert window_for("3600s", 3600, utc(2026, 11, 24, 11)).start == utc(2026, 11, 24, 11)


def test_seconds_window_longer_than_a_day_aligns_to_epoch_not_calendar() -> None:
    week = 7 * 86400
    window = window_for(f"{week}s", week, utc(2026, 11, 24))
    assert window.start is not None
    assert window.start.weekday() == 3  # 1970-01-01 was a Thursday
    assert (window.start - EPOCH).total_seconds() % week == 0


def test_seconds_period_parsed_from_string_when_not_given() -> None:
    assert period_length_seconds("90s", None) == 90
    assert window_for("90s", None, EPOCH + timedelta(seconds=95)).start == EPOCH + timedelta(
        seconds=90
    )


@pytest.mark.parametrize(("period", "seconds"), [("hourly", None), ("0s", None), ("5s", 0)])
def test_unknown_or_empty_period_is_rejected(period: str, seconds: int | None) -> None:
    with pytest.raises(ValueError):
        window_for(period, seconds, utc(2026, 1, 1))


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        window_for("daily", None, datetime(2026, 11, 24, 12))


def test_aware_non_utc_now_is_converted_to_utc() -> None:
    # 01:30 at UTC+02:00 is still the previous UTC day
    local = datetime(2026, 11, 25, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert window_for("daily", None, local) == Window(utc(2026, 11, 24), utc(2026, 11, 25))


def test_in_window_is_start_inclusive_end_exclusive() -> None:
    window = window_for("daily", None, utc(2026, 11, 24, 9))
    assert in_window(utc(2026, 11, 24), window)
    assert in_window(utc(2026, 11, 25) - LAST_US, window)
    assert not in_window(utc(2026, 11, 25), window)
    assert not in_window(utc(2026, 11, 24) - LAST_US, window)
    with pytest.raises(ValueError):
        in_window(datetime(2026, 11, 24, 9), window)


def test_previous_window() -> None:
    january = window_for("monthly", None, utc(2027, 1, 15))
    assert previous_window("monthly", None, january) == Window(utc(2026, 12, 1), utc(2027, 1, 1))
    seconds = window_for("10s", 10, EPOCH + timedelta(seconds=25))
    assert previous_window("10s", 10, seconds) == Window(
        EPOCH + timedelta(seconds=10), EPOCH + timedelta(seconds=20)
    )


def test_seconds_until_reset() -> None:
    window = window_for("daily", None, utc(2026, 11, 24, 23, 0))
    assert seconds_until_reset(window, utc(2026, 11, 24, 23, 0)) == 3600.0
    assert seconds_until_reset(window, utc(2026, 11, 26)) == 0.0
