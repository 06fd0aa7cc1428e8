"""What the probe handlers received, shared with the tests (everything runs in one process).

The tests import this module by the same top-level name the handlers do, so both sides
see one list.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_calls: list[tuple[str, dict[str, Any], Any]] = []

failing_jobs: set[str] = set()
"""Jobs the ``jobs`` consumer reports as failed, for as long as they are listed."""
failing_once: set[str] = set()
"""Sort keys the ``outbox`` stream consumer fails the first time it sees them."""


def record(function: str, event: dict[str, Any], context: Any) -> None:
    with _lock:
        _calls.append((function, event, context))


def calls(function: str) -> list[tuple[dict[str, Any], Any]]:
    with _lock:
        return [(event, context) for name, event, context in _calls if name == function]


def events(function: str) -> list[dict[str, Any]]:
    return [event for event, _ in calls(function)]


def reset() -> None:
    with _lock:
        _calls.clear()
    failing_jobs.clear()
    failing_once.clear()
