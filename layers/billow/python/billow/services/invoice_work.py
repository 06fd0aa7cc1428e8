"""The invoice worker's use case: bill what one due subscription owes, oldest first."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.clock import parse_iso
from billow.services.billing_run import DueSubscription
from billow.services.subscription_billing import bill_due

MAX_DUE_MOMENTS = 64
"""A subscription left unbilled for a long time catches up this many moments per message."""


def work(deps: Dependencies, due: DueSubscription) -> list[str]:
    """Bill every moment the subscription owes up to the run's time, oldest first."""
    now = parse_iso(due.now)
    outcomes = []
    for _ in range(MAX_DUE_MOMENTS):
        outcome, next_due = bill_due(
            deps, due.organization_id, due.external_id, due.lago_id, now, due.owners()
        )
        if outcome in {"not_due", "orphaned"}:
            break
        outcomes.append(outcome)
        if next_due is None or next_due > now:
            break  # settled up to the run's time: no need to read it again
    return outcomes
