"""Running a read-decide-write use case again when it lost a race to a concurrent one.

Every use case that writes reads what it changes, decides, and writes with a condition
on the version it read; a concurrent writer makes that condition fail
(``ConcurrentUpdate``), and the use case is decided again on fresh reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from billow.domain.errors import ConcurrentUpdate

T = TypeVar("T")
RACE_RETRIES = 25
"""Invoice numbers are taken with a conditional write; concurrent issuers retry."""


def retry_on_race(operation: Callable[[], T]) -> T:
    """Run a read-decide-write operation again when a conditional write lost a race."""
    for _ in range(RACE_RETRIES - 1):
        try:
            return operation()
        except ConcurrentUpdate:
            continue
    return operation()
