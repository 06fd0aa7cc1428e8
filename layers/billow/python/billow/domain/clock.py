"""Time and identifiers. Domain code receives "now" as an argument; only edges call utcnow()."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

_NAMESPACE = uuid.UUID("6f1c1b36-5d1a-4d5e-9a7e-2b8f1d3c4a50")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Lago's timestamp format: ISO 8601, UTC, second precision, ``Z`` suffix."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(moment: str) -> datetime:
    """The inverse of :func:`iso` (and reads any ISO 8601 instant with an offset)."""
    return datetime.fromisoformat(moment)


_ISO_8601_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601_text(value: object) -> object:
    """Lago's dates are ISO 8601 strings. pydantic would also read a number, or a string
    of digits, as seconds since 1970; a client sending one has made a mistake (Lago
    answers ``invalid_date``), so only the ISO 8601 form gets through."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_8601_DATE_TIME.match(value):
        raise ValueError("invalid_date")
    return value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_text)]
"""A date-time input: an ISO 8601 string with a UTC offset (``2030-01-02T03:04:05Z``)."""


def new_id() -> str:
    return str(uuid.uuid4())


def stable_id(*parts: str) -> str:
    """A UUID derived from our own ids, so the same fact always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))
