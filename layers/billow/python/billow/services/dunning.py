"""Dunning: automatic retries of a failed charge, on the organization's schedule.

Each ``invoice.payment_failure`` plans the next retry (by default 3, 5 and 7 days after
each failure, three retries in all). The hourly dunning run starts the retries that are
due; each is a new charge attempt with its own idempotency key. Retries stop once the
invoice is paid or voided, and a failure is planned for once however often it arrives.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso
from billow.domain.errors import ConcurrentUpdate, ValidationFailed
from billow.domain.events import OutboxEvent
from billow.services.payments.attempts import request_attempt

RetryPlan = Literal[
    "not_a_payment_failure",
    "unknown_invoice",
    "nothing_to_retry",
    "already_planned",
    "planned",
    "exhausted",
]
"""What a payment failure did to the invoice's retries, for the logs: nothing (not a
failure, an invoice gone, or one paid, voided or failing no more since), already planned
for this attempt, the next retry planned, or every retry spent (``exhausted``)."""


def plan_retry(deps: Dependencies, event: OutboxEvent) -> RetryPlan:
    failure = event.payload.get("payment_provider_invoice_payment_error")
    if not isinstance(failure, dict):
        return "not_a_payment_failure"
    organization_id = event.organization_id
    invoice = deps.store.invoices.get(organization_id, str(failure.get("lago_invoice_id")))
    organization = deps.store.organizations.get(organization_id)
    if invoice is None or organization is None:
        return "unknown_invoice"
    if not invoice.is_payable or invoice.payment_status != "failed":
        return "nothing_to_retry"
    record = deps.store.dunning.get(organization_id, invoice.lago_id)
    planned_after = int(record["after_attempt"]) if record else None
    if planned_after is not None and planned_after >= invoice.payment_attempts:
        return "already_planned"
    retries_done = int(record["retries_done"]) if record else 0
    delays = organization.payment_retry_delays_days
    next_at = (
        iso(parse_iso(event.occurred_at) + timedelta(days=delays[retries_done]))
        if retries_done < len(delays)
        else None
    )
    transaction = Transaction()
    deps.store.dunning.stage(
        transaction,
        organization_id,
        invoice.lago_id,
        retries_done=retries_done,
        after_attempt=invoice.payment_attempts,
        next_attempt_at=next_at,
        expected_after_attempt=planned_after,
    )
    try:
        deps.store.commit(transaction)
    except ConcurrentUpdate:
        return "already_planned"
    return "planned" if next_at else "exhausted"


def run_due_retries(deps: Dependencies, now: datetime) -> int:
    """Start every retry due at ``now``; returns how many were started."""
    started = 0
    for item in deps.store.dunning.list_due(iso(now)):
        organization_id = str(item["organization_id"])
        invoice_id = str(item["invoice_id"])
        after_attempt = int(item["after_attempt"])
        try:
            request_attempt(deps, organization_id, invoice_id, after_attempt=after_attempt)
            started += 1
        except ValidationFailed:
            pass  # paid or voided since: nothing more to retry
        transaction = Transaction()
        deps.store.dunning.stage(
            transaction,
            organization_id,
            invoice_id,
            retries_done=int(item["retries_done"]) + 1,
            after_attempt=after_attempt,
            next_attempt_at=None,
            expected_after_attempt=after_attempt,
        )
        try:
            deps.store.commit(transaction)
        except ConcurrentUpdate:
            continue  # an overlapping run recorded it
    return started
