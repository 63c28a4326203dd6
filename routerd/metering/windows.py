"""Budget periods as UTC time windows: which window `now` is in, what it contains, when it resets.

Owns the calendar arithmetic of budget periods and nothing else (pure, no clock of its own: the
caller passes `now`). Periods and their windows, all in UTC, start inclusive and end exclusive:

- `daily`: [00:00 today, 00:00 tomorrow)
- `weekly`: ISO week, [Monday 00:00, next Monday 00:00)
- `monthly`: [1st 00:00, 1st of the next month 00:00) (December rolls into January)
- `total`: (None, None), one window that never resets
- `<N>s`: fixed N-second windows aligned to the Unix epoch, start = floor(epoch / N) * N

A window's `start` doubles as the window's identity in the ledger store: a counter keyed by
(counter id, window start) starts at zero in each new window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CALENDAR_PERIODS = ("daily", "weekly", "monthly", "total")
_SECONDS_PERIOD = re.compile(r"^([1-9][0-9]*)s$")


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC interval [start, end); `None` bounds are open (the `total` window)."""

    start: datetime | None
    end: datetime | None

    def contains(self, ts: datetime) -> bool:
        """Whether the timezone-aware timestamp `ts` falls inside this window."""
        ts = as_utc(ts)
        if self.start is not None and ts < self.start:
            return False
        return self.end is None or ts < self.end


def as_utc(ts: datetime) -> datetime:
    """`ts` converted to UTC; a naive datetime is rejected because its zone is a guess."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts.isoformat()} given; use a timezone-aware UTC time")
    return ts.astimezone(UTC)


def period_length_seconds(period: str, period_seconds: int | None) -> int | None:
    """The window length of an `<N>s` period, or `None` for the calendar periods.

    Accepts `period_seconds` as parsed by the config loader, or parses `<N>s` from `period`.
    Raises `ValueError` for an unknown period or a non-positive length.
    """
    if period in CALENDAR_PERIODS:
        return None
    if period_seconds is None:
        match = _SECONDS_PERIOD.match(period)
        if match is None:
            raise ValueError(
                f"unknown budget period {period!r}: expected daily, weekly, monthly, total or <N>s"
            )
        period_seconds = int(match.group(1))
    if isinstance(period_seconds, bool) or period_seconds <= 0:
        raise ValueError(
            f"budget period must be a positive number of seconds, got {period_seconds}"
        )
    return period_seconds


def window_for(period: str, period_seconds: int | None, now: datetime) -> Window:
    """The window of `period` that contains `now` (timezone-aware; converted to UTC)."""
    now = as_utc(now)
    seconds = period_length_seconds(period, period_seconds)
    if seconds is not None:
        length = timedelta(seconds=seconds)
        start = EPOCH + ((now - EPOCH) // length) * length
        return Window(start, start + length)
    if period == "total":
        return Window(None, None)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return Window(midnight, midnight + timedelta(days=1))
    if period == "weekly":
        monday = midnight - timedelta(days=midnight.weekday())
        return Window(monday, monday + timedelta(days=7))
    first = midnight.replace(day=1)
    if first.month == 12:
        return Window(first, first.replace(year=first.year + 1, month=1))
    return Window(first, first.replace(month=first.month + 1))


def previous_window(period: str, period_seconds: int | None, window: Window) -> Window | None:
    """The window just before `window`, or `None` for `total` (it has no predecessor)."""
    if window.start is None:
        return None
    return window_for(period, period_seconds, window.start - timedelta(microseconds=1))


def in_window(ts: datetime, window: Window) -> bool:
    """Whether a record timestamp `ts` (timezone-aware) falls inside `window`."""
    return window.contains(ts)


def resets_at(window: Window) -> datetime | None:
    """When `window` ends and its counters start again from zero; `None` if it never resets."""
    return window.end


def seconds_until_reset(window: Window, now: datetime) -> float | None:
    """Seconds from `now` to the end of `window` (never negative); `None` if it never resets."""
    if window.end is None:
        return None
    return max((window.end - as_utc(now)).total_seconds(), 0.0)
