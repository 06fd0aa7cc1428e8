"""The scheduled billing run, and the message it sends the invoice worker.

The run reads "now" from the Scheduler event, finds what is due with an index query (no
Scan) and sends one message per due subscription. It does not bill anything itself: a
repeated or overlapping run only sends messages the worker (``billow.services.invoice_work``)
will find already settled; so the run's function loads none of the billing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.clock import iso

INVOICE_QUEUE = "invoice-work"


@dataclass(frozen=True)
class BillingKeys:
    """Whose items billing a subscription reads besides its own."""

    plan_lago_id: str
    lago_customer_id: str
    external_customer_id: str


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
