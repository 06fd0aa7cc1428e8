"""Billing periods, proration and trials (billow.domain.periods)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billow.domain.periods import (
    BillingTime,
    Interval,
    Period,
    billing_period,
    local_date,
    local_midnight,
    next_period,
    prorated_amount,
    subscription_fee,
    trial_end,
)

INTERVALS: tuple[Interval, ...] = get_args(Interval)
BILLING_TIMES: tuple[BillingTime, ...] = get_args(BillingTime)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def span(start: datetime, end: datetime) -> Period:
    return Period(start=start, end=end)


def period(
    at: datetime,
    interval: Interval,
    billing_time: BillingTime = "calendar",
    anchor: datetime | None = None,
    timezone: str = "UTC",
) -> Period:
    return billing_period(
        at,
        interval=interval,
        billing_time=billing_time,
        anchor=anchor or utc(2020, 1, 1),
        timezone=timezone,
    )


def periods_from(
    at: datetime,
    count: int,
    interval: Interval,
    billing_time: BillingTime,
    anchor: datetime,
    timezone: str = "UTC",
) -> list[Period]:
    current = period(at, interval, billing_time, anchor, timezone)
    result = [current]
    for _ in range(count - 1):
        current = next_period(
            current, interval=interval, billing_time=billing_time, anchor=anchor, timezone=timezone
        )
        result.append(current)
    return result


def starts(periods: list[Period], timezone: str = "UTC") -> list[date]:
    return [local_date(p.start, timezone) for p in periods]


# --- Calendar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "at", "start", "end"),
    [
        ("weekly", utc(2024, 3, 13, 12), utc(2024, 3, 11), utc(2024, 3, 18)),
        ("weekly", utc(2024, 3, 11), utc(2024, 3, 11), utc(2024, 3, 18)),
        ("weekly", utc(2024, 3, 17, 23, 59, 59), utc(2024, 3, 11), utc(2024, 3, 18)),
        ("weekly", utc(2024, 12, 31), utc(2024, 12, 30), utc(2025, 1, 6)),
        ("monthly", utc(2024, 2, 15, 8), utc(2024, 2, 1), utc(2024, 3, 1)),
        ("monthly", utc(2024, 12, 31, 23, 59), utc(2024, 12, 1), utc(2025, 1, 1)),
        ("monthly", utc(2025, 1, 1), utc(2025, 1, 1), utc(2025, 2, 1)),
        ("quarterly", utc(2024, 1, 1), utc(2024, 1, 1), utc(2024, 4, 1)),
        ("quarterly", utc(2024, 3, 31, 23, 59), utc(2024, 1, 1), utc(2024, 4, 1)),
        ("quarterly", utc(2024, 5, 20), utc(2024, 4, 1), utc(2024, 7, 1)),
        ("quarterly", utc(2024, 8, 1), utc(2024, 7, 1), utc(2024, 10, 1)),
        ("quarterly", utc(2024, 12, 31, 23), utc(2024, 10, 1), utc(2025, 1, 1)),
        ("yearly", utc(2024, 7, 4), utc(2024, 1, 1), utc(2025, 1, 1)),
        ("yearly", utc(2025, 1, 1), utc(2025, 1, 1), utc(2026, 1, 1)),
    ],
)
def test_calendar_periods(interval: Interval, at: datetime, start: datetime, end: datetime) -> None:
    assert period(at, interval) == span(start, end)


def test_calendar_ignores_the_anchor() -> None:
    for interval in INTERVALS:
        at = utc(2024, 5, 20, 10)
        assert period(at, interval, anchor=utc(2023, 9, 17, 3)) == period(at, interval)


def test_calendar_quarters_in_sequence() -> None:
    quarters = periods_from(utc(2023, 11, 5), 5, "quarterly", "calendar", utc(2023, 11, 5))
    assert starts(quarters) == [
        date(2023, 10, 1),
        date(2024, 1, 1),
        date(2024, 4, 1),
        date(2024, 7, 1),
        date(2024, 10, 1),
    ]


# --- Anniversary ----------------------------------------------------------------------------


def test_anniversary_weekly_follows_the_anchor_weekday() -> None:
    anchor = utc(2024, 3, 7, 15, 30)  # a Thursday, mid-afternoon
    assert period(anchor, "weekly", "anniversary", anchor) == span(
        utc(2024, 3, 7), utc(2024, 3, 14)
    )
    assert period(utc(2024, 3, 20), "weekly", "anniversary", anchor) == span(
        utc(2024, 3, 14), utc(2024, 3, 21)
    )
    assert period(utc(2024, 3, 21), "weekly", "anniversary", anchor).start == utc(2024, 3, 21)


def test_anniversary_monthly_from_the_anchor_day() -> None:
    anchor = utc(2024, 5, 17, 9)
    assert period(utc(2024, 6, 16, 23), "monthly", "anniversary", anchor) == span(
        utc(2024, 5, 17), utc(2024, 6, 17)
    )
    assert period(utc(2024, 6, 17), "monthly", "anniversary", anchor) == span(
        utc(2024, 6, 17), utc(2024, 7, 17)
    )


@pytest.mark.parametrize(
    ("year", "february_end"),
    [(2023, 28), (2024, 29), (2100, 28), (2000, 29)],
)
def test_anniversary_31_january_across_february(year: int, february_end: int) -> None:
    anchor = utc(year, 1, 31, 14)
    monthly = periods_from(anchor, 5, "monthly", "anniversary", anchor)
    assert starts(monthly) == [
        date(year, 1, 31),
        date(year, 2, february_end),
        date(year, 3, 31),
        date(year, 4, 30),
        date(year, 5, 31),
    ]
    assert monthly[1] == span(utc(year, 2, february_end), utc(year, 3, 31))


def test_anniversary_31_january_clamps_from_the_anchor_each_month() -> None:
    anchor = utc(2023, 1, 31)
    # An instant in the middle of February / April finds the clamped boundary directly.
    assert period(utc(2023, 3, 15), "monthly", "anniversary", anchor) == span(
        utc(2023, 2, 28), utc(2023, 3, 31)
    )
    assert period(utc(2023, 5, 1), "monthly", "anniversary", anchor) == span(
        utc(2023, 4, 30), utc(2023, 5, 31)
    )
    assert period(utc(2024, 2, 29), "monthly", "anniversary", anchor) == span(
        utc(2024, 2, 29), utc(2024, 3, 31)
    )
    assert period(utc(2024, 2, 28), "monthly", "anniversary", anchor) == span(
        utc(2024, 1, 31), utc(2024, 2, 29)
    )


def test_anniversary_29_february_yearly() -> None:
    anchor = utc(2024, 2, 29, 18)
    yearly = periods_from(anchor, 5, "yearly", "anniversary", anchor)
    assert starts(yearly) == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]
    assert period(utc(2028, 2, 28, 12), "yearly", "anniversary", anchor) == span(
        utc(2027, 2, 28), utc(2028, 2, 29)
    )


def test_anniversary_29_february_monthly_and_quarterly() -> None:
    anchor = utc(2024, 2, 29)
    assert starts(periods_from(anchor, 4, "monthly", "anniversary", anchor)) == [
        date(2024, 2, 29),
        date(2024, 3, 29),
        date(2024, 4, 29),
        date(2024, 5, 29),
    ]
    assert period(utc(2025, 2, 28), "monthly", "anniversary", anchor) == span(
        utc(2025, 2, 28), utc(2025, 3, 29)
    )
    assert starts(periods_from(anchor, 5, "quarterly", "anniversary", anchor)) == [
        date(2024, 2, 29),
        date(2024, 5, 29),
        date(2024, 8, 29),
        date(2024, 11, 29),
        date(2025, 2, 28),
    ]


def test_anniversary_quarterly_30_november_through_a_leap_february() -> None:
    anchor = utc(2023, 11, 30)
    assert starts(periods_from(anchor, 4, "quarterly", "anniversary", anchor)) == [
        date(2023, 11, 30),
        date(2024, 2, 29),
        date(2024, 5, 30),
        date(2024, 8, 30),
    ]


def test_anniversary_yearly() -> None:
    anchor = utc(2022, 8, 15, 10)
    assert period(utc(2024, 8, 14), "yearly", "anniversary", anchor) == span(
        utc(2023, 8, 15), utc(2024, 8, 15)
    )


def test_anniversary_before_the_anchor_extends_the_schedule_backwards() -> None:
    anchor = utc(2024, 3, 31)
    assert period(utc(2024, 3, 1), "monthly", "anniversary", anchor) == span(
        utc(2024, 2, 29), utc(2024, 3, 31)
    )


# --- Timezones and DST ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "at", "start", "end"),
    [
        # Paris: UTC+1 in winter, UTC+2 from the last Sunday of March.
        ("Europe/Paris", utc(2024, 1, 15), utc(2023, 12, 31, 23), utc(2024, 1, 31, 23)),
        ("Europe/Paris", utc(2024, 7, 15), utc(2024, 6, 30, 22), utc(2024, 7, 31, 22)),
        ("Europe/Paris", utc(2024, 3, 15), utc(2024, 2, 29, 23), utc(2024, 3, 31, 22)),
        ("Europe/Paris", utc(2024, 10, 15), utc(2024, 9, 30, 22), utc(2024, 10, 31, 23)),
        # Los Angeles: UTC-8 in winter, UTC-7 in summer.
        ("America/Los_Angeles", utc(2024, 1, 15), utc(2024, 1, 1, 8), utc(2024, 2, 1, 8)),
        ("America/Los_Angeles", utc(2024, 7, 15), utc(2024, 7, 1, 7), utc(2024, 8, 1, 7)),
        ("America/New_York", utc(2024, 3, 15), utc(2024, 3, 1, 5), utc(2024, 4, 1, 4)),
        ("Asia/Kolkata", utc(2024, 3, 15), utc(2024, 2, 29, 18, 30), utc(2024, 3, 31, 18, 30)),
    ],
)
def test_monthly_boundaries_are_local_midnights(
    timezone: str, at: datetime, start: datetime, end: datetime
) -> None:
    assert period(at, "monthly", timezone=timezone) == span(start, end)


def test_an_instant_belongs_to_the_customers_local_month() -> None:
    # 31 Jan 23:30 UTC is already 1 February 00:30 in Paris, but still 31 January in New York.
    at = utc(2024, 1, 31, 23, 30)
    assert period(at, "monthly", timezone="Europe/Paris").start == utc(2024, 1, 31, 23)
    assert period(at, "monthly", timezone="America/New_York").start == utc(2024, 1, 1, 5)


def test_calendar_quarter_and_year_in_a_timezone() -> None:
    assert period(utc(2024, 5, 1), "quarterly", timezone="America/Los_Angeles") == span(
        utc(2024, 4, 1, 7), utc(2024, 7, 1, 7)
    )
    assert period(utc(2024, 5, 1), "yearly", timezone="Europe/Paris") == span(
        utc(2023, 12, 31, 23), utc(2024, 12, 31, 23)
    )


def test_weeks_across_dst_changes_stay_on_local_midnight() -> None:
    # Paris springs forward on Sunday 31 March 2024: that week is one hour short.
    spring = period(utc(2024, 3, 28), "weekly", timezone="Europe/Paris")
    assert spring == span(utc(2024, 3, 24, 23), utc(2024, 3, 31, 22))
    assert spring.end - spring.start == timedelta(days=7, hours=-1)
    assert spring.local_days("Europe/Paris") == 7
    # Los Angeles falls back on Sunday 3 November 2024: that week is one hour long.
    autumn = period(utc(2024, 11, 1), "weekly", timezone="America/Los_Angeles")
    assert autumn == span(utc(2024, 10, 28, 7), utc(2024, 11, 4, 8))
    assert autumn.end - autumn.start == timedelta(days=7, hours=1)
    following = next_period(
        autumn,
        interval="weekly",
        billing_time="calendar",
        anchor=utc(2024, 1, 1),
        timezone="America/Los_Angeles",
    )
    assert following == span(utc(2024, 11, 4, 8), utc(2024, 11, 11, 8))


def test_anniversary_weeks_in_a_timezone_across_dst() -> None:
    anchor = utc(2024, 3, 27, 22, 30)  # Wednesday 27 March 23:30 in Paris
    weeks = periods_from(anchor, 2, "weekly", "anniversary", anchor, "Europe/Paris")
    assert weeks == [
        span(utc(2024, 3, 26, 23), utc(2024, 4, 2, 22)),
        span(utc(2024, 4, 2, 22), utc(2024, 4, 9, 22)),
    ]


def test_anniversary_anchor_uses_the_customers_local_date() -> None:
    anchor = utc(2024, 1, 31, 23, 30)  # 1 February 00:30 in Paris
    assert period(anchor, "monthly", "anniversary", anchor, "Europe/Paris") == span(
        utc(2024, 1, 31, 23), utc(2024, 2, 29, 23)
    )
    assert period(anchor, "monthly", "anniversary", anchor, "UTC") == span(
        utc(2024, 1, 31), utc(2024, 2, 29)
    )


def test_a_day_whose_midnight_is_skipped_starts_at_the_change() -> None:
    # Santiago moved from 00:00 (UTC-4) straight to 01:00 (UTC-3) on 8 September 2024.
    assert local_midnight(date(2024, 9, 8), "America/Santiago") == utc(2024, 9, 8, 4)
    anchor = utc(2024, 9, 8, 15)
    week = period(utc(2024, 9, 10), "weekly", "anniversary", anchor, "America/Santiago")
    assert week == span(utc(2024, 9, 8, 4), utc(2024, 9, 15, 3))
    assert week.contains(utc(2024, 9, 8, 4))
    assert not week.contains(utc(2024, 9, 8, 3, 59, 59))


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        period(utc(2024, 1, 1), "monthly", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="aware"):
        period(datetime(2024, 1, 1), "monthly")
    with pytest.raises(ValueError):
        span(utc(2024, 2, 1), utc(2024, 1, 1))
    with pytest.raises(ValueError, match="not a billing period"):
        next_period(
            span(utc(2024, 1, 1), utc(2024, 1, 15)),
            interval="monthly",
            billing_time="calendar",
            anchor=utc(2024, 1, 1),
            timezone="UTC",
        )


def test_period_normalises_to_utc() -> None:
    paris = ZoneInfo("Europe/Paris")
    p = span(datetime(2024, 1, 1, tzinfo=paris), datetime(2024, 2, 1, tzinfo=paris))
    assert p.start.tzinfo is UTC
    assert p.start == utc(2023, 12, 31, 23)


# --- Proration ------------------------------------------------------------------------------

JANUARY = span(utc(2024, 1, 1), utc(2024, 2, 1))


def test_prorated_calendar_first_month() -> None:
    covered = span(utc(2024, 1, 15, 13), JANUARY.end)
    assert covered.local_days("UTC") == 17
    assert prorated_amount(3100, covered, JANUARY, "UTC") == 1700
    assert prorated_amount(1000, covered, JANUARY, "UTC") == 548  # 548.39


def test_proration_counts_the_customers_local_days() -> None:
    paris_january = period(utc(2024, 1, 10), "monthly", timezone="Europe/Paris")
    started = utc(2024, 1, 14, 23, 30)  # 15 January 00:30 in Paris, still 14 January in UTC
    assert prorated_amount(
        3100, span(started, paris_january.end), paris_january, "Europe/Paris"
    ) == (1700)
    assert prorated_amount(3100, span(started, JANUARY.end), JANUARY, "UTC") == 1800


def test_proration_rounds_half_up() -> None:
    april = span(utc(2024, 4, 1), utc(2024, 5, 1))
    second_half = span(utc(2024, 4, 16), april.end)  # 15 of 30 days
    assert prorated_amount(1, second_half, april, "UTC") == 1
    assert prorated_amount(3, second_half, april, "UTC") == 2
    assert prorated_amount(5, span(utc(2024, 4, 21), april.end), april, "UTC") == 2  # 1.67


def test_full_and_empty_coverage() -> None:
    assert prorated_amount(999_999, JANUARY, JANUARY, "UTC") == 999_999
    assert prorated_amount(1000, span(utc(2024, 1, 1, 9), JANUARY.end), JANUARY, "UTC") == 1000
    assert prorated_amount(1000, span(JANUARY.end, JANUARY.end), JANUARY, "UTC") == 0
    assert prorated_amount(1000, span(utc(2024, 3, 1), utc(2024, 4, 1)), JANUARY, "UTC") == 0
    # Coverage beyond the period is clipped to it.
    assert prorated_amount(1000, span(utc(2023, 6, 1), utc(2025, 1, 1)), JANUARY, "UTC") == 1000


# --- Trials and subscription fees ------------------------------------------------------------


def test_trial_end() -> None:
    started = utc(2024, 1, 1, 10)
    assert trial_end(started, Decimal(10)) == utc(2024, 1, 11, 10)
    assert trial_end(started, 14) == utc(2024, 1, 15, 10)
    assert trial_end(started, Decimal("1.5")) == utc(2024, 1, 2, 22)
    assert trial_end(started, Decimal("0.25")) == utc(2024, 1, 1, 16)
    assert trial_end(started, None) is None
    assert trial_end(started, Decimal(0)) is None
    with pytest.raises(ValueError):
        trial_end(started, Decimal("NaN"))


def test_calendar_first_period_is_prorated() -> None:
    fee = subscription_fee(3100, JANUARY, started_at=utc(2024, 1, 15, 13), timezone="UTC")
    assert fee.amount_cents == 1700
    assert (fee.from_datetime, fee.to_datetime) == (utc(2024, 1, 15, 13), JANUARY.end)


def test_calendar_first_week_is_prorated() -> None:
    week = period(utc(2024, 3, 13), "weekly")
    fee = subscription_fee(700, week, started_at=utc(2024, 3, 13, 8), timezone="UTC")
    assert fee.amount_cents == 500  # Wednesday to Sunday


def test_anniversary_first_period_is_whole() -> None:
    started = utc(2024, 1, 20, 15)
    for interval in INTERVALS:
        first = period(started, interval, "anniversary", started, "Europe/Paris")
        fee = subscription_fee(4999, first, started_at=started, timezone="Europe/Paris")
        assert fee.amount_cents == 4999
        assert fee.from_datetime == started


def test_later_periods_are_whole() -> None:
    february = span(utc(2024, 2, 1), utc(2024, 3, 1))
    fee = subscription_fee(3100, february, started_at=utc(2024, 1, 15), timezone="UTC")
    assert fee.amount_cents == 3100
    assert fee.span == february


def test_trial_covering_the_whole_period_costs_nothing() -> None:
    started = utc(2024, 1, 1)
    ends = trial_end(started, Decimal(45))
    fee = subscription_fee(3100, JANUARY, started_at=started, trial_ended_at=ends, timezone="UTC")
    assert fee.amount_cents == 0
    assert fee.from_datetime == fee.to_datetime == JANUARY.end
    exact = subscription_fee(
        3100, JANUARY, started_at=started, trial_ended_at=JANUARY.end, timezone="UTC"
    )
    assert exact.amount_cents == 0


def test_trial_ending_inside_the_period_prorates_from_its_last_day() -> None:
    started = utc(2024, 1, 1)
    fee = subscription_fee(
        3100,
        JANUARY,
        started_at=started,
        trial_ended_at=trial_end(started, Decimal(10)),
        timezone="UTC",
    )
    assert fee.amount_cents == 2100  # 11..31 January
    assert fee.from_datetime == utc(2024, 1, 11)
    midday = subscription_fee(
        3100,
        JANUARY,
        started_at=started,
        trial_ended_at=trial_end(started, Decimal("10.5")),
        timezone="UTC",
    )
    assert midday.amount_cents == 2100  # the day the trial ends is billed


def test_trial_ended_before_the_period_changes_nothing() -> None:
    february = span(utc(2024, 2, 1), utc(2024, 3, 1))
    fee = subscription_fee(
        2900,
        february,
        started_at=utc(2024, 1, 1),
        trial_ended_at=utc(2024, 1, 11),
        timezone="UTC",
    )
    assert fee.amount_cents == 2900


def test_termination_prorates_including_its_day() -> None:
    february = span(utc(2024, 2, 1), utc(2024, 3, 1))  # 29 days
    fee = subscription_fee(
        2900,
        february,
        started_at=utc(2023, 6, 1),
        terminated_at=utc(2024, 2, 10, 15),
        timezone="UTC",
    )
    assert fee.amount_cents == 1000  # 1..10 February
    assert fee.to_datetime == utc(2024, 2, 10, 15)
    at_midnight = subscription_fee(
        2900,
        february,
        started_at=utc(2023, 6, 1),
        terminated_at=utc(2024, 2, 10),
        timezone="UTC",
    )
    assert at_midnight.amount_cents == 900  # nothing of 10 February was used


def test_termination_and_trial_and_start_in_the_same_period() -> None:
    fee = subscription_fee(
        3100,
        JANUARY,
        started_at=utc(2024, 1, 5, 9),
        trial_ended_at=utc(2024, 1, 12, 9),
        terminated_at=utc(2024, 1, 20, 18),
        timezone="UTC",
    )
    assert fee.amount_cents == 900  # 12..20 January
    assert fee.span == span(utc(2024, 1, 12, 9), utc(2024, 1, 20, 18))


def test_nothing_is_charged_outside_the_subscription() -> None:
    before = subscription_fee(
        3100,
        JANUARY,
        started_at=utc(2023, 1, 1),
        terminated_at=utc(2023, 12, 20),
        timezone="UTC",
    )
    assert before.amount_cents == 0
    assert before.span.empty
    at_start = subscription_fee(
        3100, JANUARY, started_at=utc(2023, 1, 1), terminated_at=JANUARY.start, timezone="UTC"
    )
    assert at_start.amount_cents == 0
    after = subscription_fee(3100, JANUARY, started_at=utc(2024, 3, 1), timezone="UTC")
    assert after.amount_cents == 0


# --- Properties -----------------------------------------------------------------------------

TIMEZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "America/Santiago",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
]
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2060, 12, 31),
    timezones=st.just(UTC),
)
schedules = st.tuples(
    st.sampled_from(INTERVALS),
    st.sampled_from(BILLING_TIMES),
    instants,
    st.sampled_from(TIMEZONES),
)


@settings(max_examples=150, deadline=None)
@given(at=instants, schedule=schedules)
def test_periods_hold_their_instant_and_tile_time(
    at: datetime, schedule: tuple[Interval, BillingTime, datetime, str]
) -> None:
    interval, billing_time, anchor, timezone = schedule
    current = period(at, interval, billing_time, anchor, timezone)
    assert current.contains(at)
    assert current.start < current.end
    following = next_period(
        current, interval=interval, billing_time=billing_time, anchor=anchor, timezone=timezone
    )
    assert following.start == current.end
    last_instant = current.end - timedelta(microseconds=1)
    assert period(last_instant, interval, billing_time, anchor, timezone) == current
    assert period(current.start, interval, billing_time, anchor, timezone) == current
    tz = ZoneInfo(timezone)
    for boundary in (current.start, current.end):
        local = boundary.astimezone(tz)
        # A local midnight, or the first instant of a day whose midnight was skipped.
        assert local.time() == time() or local_midnight(local.date(), timezone) == boundary
    first = local_date(current.start, timezone)
    if billing_time == "anniversary":
        anchor_day = local_date(anchor, timezone)
        if interval == "weekly":
            assert first.weekday() == anchor_day.weekday()
        else:
            clamped = min(anchor_day.day, calendar.monthrange(first.year, first.month)[1])
            assert first.day == clamped
    elif interval == "weekly":
        assert first.weekday() == 0
    else:
        assert first.day == 1
        assert first.month in {"monthly": range(1, 13), "quarterly": (1, 4, 7, 10)}.get(
            interval, (1,)
        )


@settings(max_examples=150, deadline=None)
@given(
    amount=st.integers(min_value=0, max_value=10**9),
    at=instants,
    timezone=st.sampled_from(TIMEZONES),
    interval=st.sampled_from(INTERVALS),
    cuts=st.lists(st.integers(0, 1_000_000), min_size=2, max_size=2),
)
def test_proration_stays_within_the_amount(
    amount: int, at: datetime, timezone: str, interval: Interval, cuts: list[int]
) -> None:
    full = period(at, interval, timezone=timezone)
    length = full.end - full.start
    low, high = sorted(cuts)
    covered = span(full.start + length * low / 1_000_000, full.start + length * high / 1_000_000)
    prorated = prorated_amount(amount, covered, full, timezone)
    assert 0 <= prorated <= amount
    assert prorated_amount(amount, full, full, timezone) == amount
    if covered.empty:
        assert prorated == 0
    tail = span(covered.start, full.end)
    assert prorated_amount(amount, tail, full, timezone) >= prorated
