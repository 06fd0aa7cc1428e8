"""Time and identifiers. Domain code receives "now" as an argument; only edges call utcnow()."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

_NAMESPACE = uuid.UUID("6f1c1b36-5d1a-4d5e-9a7e-2b8f1d3c4a50")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Lago's timestamp format: ISO 8601, UTC, second precision, ``Z`` suffix."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(moment: str) -> datetime:
    """The inverse of :func:`iso` (and reads any ISO 8601 instant with an offset)."""
    return datetime.fromisoformat(moment)


def new_id() -> str:
    return str(uuid.uuid4())


def stable_id(*parts: str) -> str:
    """A UUID derived from our own ids, so the same fact always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))
