"""EventBridge Scheduler's part: the time a schedule fires at, as its event carries it.
moto's Scheduler never fires; local mode fires a schedule only when asked to."""

from __future__ import annotations

from datetime import UTC, datetime


class UnknownScheduleError(LookupError):
    pass


class ScheduleTimeOutOfRangeError(ValueError):
    """A schedule fired at a time outside :data:`SCHEDULE_TIMES`."""


def schedule_time(moment: datetime) -> str:
    """Scheduler's ``<aws.scheduler.scheduled-time>`` form; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


SCHEDULE_TIMES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))
"""Times a schedule may be fired at: from the Unix epoch to the end of year 2999. Billing
counts whole periods forward and back from the time, which Python's dates cannot do near
their ends (years 1 and 9999)."""
