"""The scheduled billing run and the invoice worker it feeds.

The run reads "now" from the Scheduler event, finds what is due with an index query (no
Scan) and sends one message per due subscription. It does not bill anything itself: a
repeated or overlapping run only sends messages the worker will find already settled.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso
from billow.services.subscription_billing import bill_due

INVOICE_QUEUE = "invoice-work"
MAX_DUE_MOMENTS = 64
"""A subscription left unbilled for a long time catches up this many moments per message."""


class DueSubscription(BaseModel):
    organization_id: str
    external_id: str
    lago_id: str
    now: str


def run(deps: Dependencies, now: datetime) -> int:
    """Queue every subscription due at ``now``; returns how many were queued."""
    moment = iso(now)
    return deps.queues.send_all(
        INVOICE_QUEUE,
        (
            DueSubscription(
                organization_id=str(item["organization_id"]),
                external_id=str(item["external_id"]),
                lago_id=str(item["lago_id"]),
                now=moment,
            ).model_dump()
            for item in deps.store.subscriptions.list_due(moment)
        ),
    )


def work(deps: Dependencies, due: DueSubscription) -> list[str]:
    """Bill every moment the subscription owes up to the run's time, oldest first."""
    now = parse_iso(due.now)
    outcomes = []
    for _ in range(MAX_DUE_MOMENTS):
        outcome, next_due = bill_due(deps, due.organization_id, due.external_id, due.lago_id, now)
        if outcome in {"not_due", "orphaned"}:
            break
        outcomes.append(outcome)
        if next_due is None or next_due > now:
            break  # settled up to the run's time: no need to read it again
    return outcomes
