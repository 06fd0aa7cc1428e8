"""Billing periods, proration and trials, as Lago computes them.

Every boundary is a local midnight in the customer's IANA timezone, held as a UTC instant.
Periods are half-open: ``start`` is included, ``end`` is not, so consecutive periods tile time.

Days are counted as the customer's local calendar days a span touches: a span from any instant
of local day D to the end of a period counts D (Lago bills the start day, the day a trial ends
and the day of a termination).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

Interval = Literal["weekly", "monthly", "quarterly", "yearly"]
BillingTime = Literal["calendar", "anniversary"]

_MONTHS_PER_PERIOD: dict[str, int] = {"monthly": 1, "quarterly": 3, "yearly": 12}
# Calendar periods are anniversary periods anchored on a Monday (weeks) or on 1 January.
_CALENDAR_WEEK_ANCHOR = date(2001, 1, 1)  # a Monday
_CALENDAR_YEAR_ANCHOR = date(2001, 1, 1)
_MICROSECONDS_PER_DAY = 86_400_000_000


def zone(timezone: str) -> ZoneInfo:
    """The IANA zone named ``timezone``; ``ValueError`` if there is no such zone."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown timezone: {timezone!r}") from error


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def local_date(moment: datetime, timezone: str) -> date:
    """The customer's calendar date at ``moment`` (an aware instant)."""
    _require_aware(moment, "moment")
    return moment.astimezone(zone(timezone)).date()


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of local ``day`` in ``timezone``, as a UTC datetime.

    Where a DST change skips midnight, this is the instant the day begins (the change itself).
    """
    return _midnight(day, zone(timezone))


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0 reads a skipped midnight with the offset in force before the change, which lands
    # on the change itself, and a repeated midnight as its first occurrence.
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def _add_months(anchor: date, months: int) -> date:
    """``anchor`` moved by ``months`` months, its day clamped to the target month's length."""
    year, month_index = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    month = month_index + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def _local_bounds(
    day: date, interval: Interval, billing_time: BillingTime, anchor_day: date
) -> tuple[date, date]:
    """First local date of the period holding ``day`` and first local date of the next one."""
    if interval == "weekly":
        origin = _CALENDAR_WEEK_ANCHOR if billing_time == "calendar" else anchor_day
        start = origin + timedelta(days=7 * ((day - origin).days // 7))
        return start, start + timedelta(days=7)
    step = _MONTHS_PER_PERIOD[interval]
    origin = _CALENDAR_YEAR_ANCHOR if billing_time == "calendar" else anchor_day
    index = ((day.year - origin.year) * 12 + day.month - origin.month) // step
    start = _add_months(origin, index * step)
    if start > day:  # same month as ``day`` but a later (anchor) day of it
        index -= 1
        start = _add_months(origin, index * step)
    # Each boundary is clamped from the anchor day, never from the previous boundary.
    return start, _add_months(origin, (index + 1) * step)


class Period(BaseModel):
    """A half-open span of time ``[start, end)`` between two UTC instants."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        _require_aware(value, "period bounds")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError("a period cannot end before it starts")
        return self

    @property
    def empty(self) -> bool:
        return self.start == self.end

    def contains(self, moment: datetime) -> bool:
        _require_aware(moment, "moment")
        return self.start <= moment < self.end

    def intersection(self, other: Period) -> Period:
        """The overlap of both spans; an empty period (at the later start) when disjoint."""
        start = max(self.start, other.start)
        return Period(start=start, end=max(start, min(self.end, other.end)))

    def local_days(self, timezone: str) -> int:
        """How many local calendar days of ``timezone`` the span touches (0 when empty)."""
        if self.empty:
            return 0
        tz = zone(timezone)
        first = self.start.astimezone(tz).date()
        last = self.end.astimezone(tz).date()
        if _midnight(last, tz) < self.end:  # the end falls inside ``last``, which is touched
            last += timedelta(days=1)
        return (last - first).days


def billing_period(
    at: datetime,
    *,
    interval: Interval,
    billing_time: BillingTime,
    anchor: datetime,
    timezone: str,
) -> Period:
    """The billing period that contains the instant ``at``.

    Calendar periods start on Monday, the 1st of the month, the 1st of Jan/Apr/Jul/Oct or
    1 January. Anniversary periods start on the local date of ``anchor`` (the subscription
    start; its time of day is ignored) and repeat every 1 week / 1, 3 or 12 months, with the
    day clamped to the month's length from the anchor's day each time (31 Jan → 28/29 Feb →
    31 Mar). ``anchor`` is ignored for calendar billing. Boundaries are local midnights of
    ``timezone``.
    """
    _require_aware(at, "at")
    _require_aware(anchor, "anchor")
    tz = zone(timezone)
    anchor_day = anchor.astimezone(tz).date()
    day = at.astimezone(tz).date()
    while True:
        first, after = _local_bounds(day, interval, billing_time, anchor_day)
        period = Period(start=_midnight(first, tz), end=_midnight(after, tz))
        # Local dates are monotonic in every real zone; these guards keep ``at`` inside the
        # period even if a zone moved its clock back across midnight.
        if at < period.start:
            day = first - timedelta(days=1)
        elif at >= period.end:
            day = after
        else:
            return period


def next_period(
    period: Period,
    *,
    interval: Interval,
    billing_time: BillingTime,
    anchor: datetime,
    timezone: str,
) -> Period:
    """The billing period that starts at ``period.end``.

    ``period`` must be a billing period of the same schedule (``ValueError`` otherwise).
    """
    following = billing_period(
        period.end,
        interval=interval,
        billing_time=billing_time,
        anchor=anchor,
        timezone=timezone,
    )
    if following.start != period.end:
        raise ValueError("period is not a billing period of this schedule")
    return following


def _div_round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to an integer, halves away from zero."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def prorated_amount(amount_cents: int, covered: Period, full: Period, timezone: str) -> int:
    """``amount_cents`` × local days of ``covered`` / local days of ``full``, rounded half-up.

    ``covered`` is first clipped to ``full``. Full coverage gives exactly ``amount_cents``;
    no coverage gives 0. A partial day at either end counts as a whole day.
    """
    span = covered.intersection(full)
    if span.empty:
        return 0
    if span == full:
        return amount_cents
    days = span.local_days(timezone)
    full_days = full.local_days(timezone)
    if days >= full_days:
        return amount_cents
    return _div_round_half_up(amount_cents * days, full_days)


def trial_end(started_at: datetime, trial_period_days: Decimal | int | None) -> datetime | None:
    """When a trial of ``trial_period_days`` (Lago's ``plan.trial_period``, possibly
    fractional) that began at ``started_at`` ends; ``None`` for no trial (None or ≤ 0).

    Days are 24-hour days of elapsed time (the microsecond is rounded half-up). Lago counts the
    trial from the *initial* ``started_at`` of the external id, so pass that one.
    """
    _require_aware(started_at, "started_at")
    if trial_period_days is None:
        return None
    days = Decimal(trial_period_days)
    if not days.is_finite():
        raise ValueError("trial_period_days must be a finite number")
    if days <= 0:
        return None
    microseconds = (days * _MICROSECONDS_PER_DAY).to_integral_value(rounding=ROUND_HALF_UP)
    return started_at.astimezone(UTC) + timedelta(microseconds=int(microseconds))


class SubscriptionFee(BaseModel):
    """The subscription fee for one billing period and the span it charges, ``[from, to)``.

    ``to_datetime`` is exclusive; Lago shows an inclusive ``to_datetime`` (one second earlier).
    When nothing is charged (trial or termination covers the period) both bounds are equal.
    """

    model_config = ConfigDict(frozen=True)

    amount_cents: int
    from_datetime: datetime
    to_datetime: datetime

    @property
    def span(self) -> Period:
        return Period(start=self.from_datetime, end=self.to_datetime)


def subscription_fee(
    amount_cents: int,
    period: Period,
    *,
    started_at: datetime,
    timezone: str,
    trial_ended_at: datetime | None = None,
    terminated_at: datetime | None = None,
) -> SubscriptionFee:
    """The plan fee charged for ``period`` (a billing period of the subscription).

    The charged span is ``[max(period.start, started_at, trial_ended_at),
    min(period.end, terminated_at))``; its fee is ``amount_cents`` prorated by local days
    (see :func:`prorated_amount`), 0 when the span is empty.

    No ``billing_time`` argument is needed: a calendar first period starting mid-period is
    prorated (start day included), while an anniversary first period starts on the local
    date of ``started_at`` and so counts every one of its days, the full amount. A trial
    ending inside the period prorates from the day it ends; a termination prorates up to the
    day it happens (included). Which invoices bill a period in full regardless (Lago's
    pay-in-advance and "started in the past" rules) is the caller's decision.
    """
    _require_aware(started_at, "started_at")
    start = max(period.start, started_at.astimezone(UTC))
    if trial_ended_at is not None:
        _require_aware(trial_ended_at, "trial_ended_at")
        start = max(start, trial_ended_at.astimezone(UTC))
    end = period.end
    if terminated_at is not None:
        _require_aware(terminated_at, "terminated_at")
        end = min(end, terminated_at.astimezone(UTC))
    start = min(start, period.end)
    if end <= start:
        return SubscriptionFee(amount_cents=0, from_datetime=start, to_datetime=start)
    covered = Period(start=start, end=end)
    return SubscriptionFee(
        amount_cents=prorated_amount(amount_cents, covered, period, timezone),
        from_datetime=start,
        to_datetime=end,
    )
