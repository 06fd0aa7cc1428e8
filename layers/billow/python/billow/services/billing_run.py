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
from billow.services.subscription_billing import BillingKeys, bill_due

INVOICE_QUEUE = "invoice-work"
MAX_DUE_MOMENTS = 64
"""A subscription left unbilled for a long time catches up this many moments per message."""


class DueSubscription(BaseModel):
    organization_id: str
    external_id: str
    lago_id: str
    now: str
    plan_lago_id: str | None = None
    lago_customer_id: str | None = None
    external_customer_id: str | None = None
    """Whose items billing reads besides the subscription, as the due index had them: the
    worker reads them with it in one BatchGetItem (and again if they changed since).
    Absent from messages of index entries written before they carried them."""

    def owners(self) -> BillingKeys | None:
        if self.plan_lago_id and self.lago_customer_id and self.external_customer_id:
            return BillingKeys(
                plan_lago_id=self.plan_lago_id,
                lago_customer_id=self.lago_customer_id,
                external_customer_id=self.external_customer_id,
            )
        return None


def run(deps: Dependencies, now: datetime) -> int:
    """Queue every subscription due at ``now``; returns how many were queued."""
    moment = iso(now)
    return deps.queues.send_all(
        INVOICE_QUEUE,
        (
            DueSubscription.model_validate({**item, "now": moment}).model_dump()
            for item in deps.store.subscriptions.list_due(moment)
        ),
    )


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
