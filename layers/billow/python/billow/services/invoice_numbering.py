"""Numbering issued invoices: one numberer per organization at a time, in batches.

Lago numbers an organization's invoices 1, 2, 3… without a gap or a twin. Taking the next
number inside the issuing transaction made every concurrent issuer of an organization
race for one item: at the invoice worker's deployed concurrency (20) that was 2.2 failed
transactions per invoice (``bench/invoice_numbers.py``), each decided again from fresh
reads. Instead:

1. An issuer commits its invoice aside, unnumbered, with everything else its decision
   writes (``stage_invoice_to_number``). Issuers share no item, so they never collide.
2. It then numbers what waits, unless another numberer holds the organization's lease. The
   holder numbers until nothing waits, ``BATCH`` invoices per transaction with one write of
   the sequence for all of them, releases the lease and looks once more.

Why no invoice is left waiting: an issuer reads the lease only after its invoice is
committed. If the lease is held then, the holder's last look comes after its release, so
after that read, and sees the invoice (the look is strongly consistent). A numberer that
dies keeps the lease until ``LEASE_MS`` passes; the next issuer of the organization, or
the hourly run's sweep (``number_stranded``), numbers what it left.

The write of the sequence stays conditional on the number read: the lease spares the
races, the condition makes one harmless (a numberer whose lease expired while it worked
loses its batch and reads again).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, stable_id, utcnow
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.invoices import Invoice, invoice_number
from billow.domain.organizations import Organization
from billow.services.retries import retry_on_race
from billow.topology import PAYMENT_REQUESTED

BATCH = 20
"""Invoices numbered per transaction: each is its put, its waiting copy's delete and at
most two counter updates, within DynamoDB's 100 actions with the sequence and the outbox."""
LEASE_MS = 60_000
WORK_S = 40.0
"""How long one call numbers before it lets go (within ``LEASE_MS``); what still waits is
numbered by the next issuer or the sweep."""
LINGER_LOOKS = 3
LINGER_S = 0.03
"""A numberer that numbered others' invoices looks a few more times before it lets go: on a
billing day more arrive every few milliseconds, and each hand-over of the lease is a moment
where two issuers may both try to take it (a failed write each time)."""
STRANDED_AFTER = timedelta(minutes=5)
AWAIT_S = 10.0
AWAIT_STEP_S = 0.05


def payment_requested(invoice: Invoice, redriven_at: str | None = None) -> OutboxEvent:
    """The command the payments consumer acts on; one id per attempt, so a replay is one
    charge. An attempt asked for again (``redriven_at``) is a new message for the same
    attempt: the charge it makes carries the attempt's own idempotency key."""
    parts = (invoice.lago_id, str(invoice.payment_attempts))
    return internal_event(
        invoice.organization_id,
        PAYMENT_REQUESTED,
        {"invoice_id": invoice.lago_id, "attempt": invoice.payment_attempts},
        event_id=stable_id("payment-requested", *parts, *([redriven_at] if redriven_at else [])),
    )


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def number_waiting(deps: Dependencies, organization_id: str) -> dict[str, Invoice]:
    """Number every invoice the organization has waiting, unless a numberer is at work (it
    will number them). Returns the invoices this call numbered, by id."""
    numbered: dict[str, Invoice] = {}
    deadline = time.monotonic() + WORK_S
    while not deps.store.numbering_lease_held(organization_id, _now_ms()):
        owner, now = new_id(), _now_ms()
        if not deps.store.take_numbering_lease(organization_id, owner, now, now + LEASE_MS):
            break  # taken since the read: that numberer looks after it took the lease
        try:
            organization = deps.store.get_organization(organization_id)
            idle = 0
            while organization is not None and time.monotonic() < deadline:
                batch = retry_on_race(lambda: _number_next(deps, organization))  # noqa: B023
                numbered.update(batch)
                if batch:
                    idle = 0
                elif len(numbered) > 1 and idle < LINGER_LOOKS:
                    idle += 1  # others are issuing: keep the lease rather than hand it over
                    time.sleep(LINGER_S)
                else:
                    break
        finally:
            deps.store.release_numbering_lease(organization_id, owner)
        if time.monotonic() >= deadline or not deps.store.invoices_to_number(organization_id, 1):
            break
    return numbered


def _number_next(deps: Dependencies, organization: Organization) -> dict[str, Invoice]:
    """Number up to ``BATCH`` waiting invoices in one transaction, in the order of their ids."""
    waiting = deps.store.invoices_to_number(organization.id, BATCH)
    if not waiting:
        return {}
    read = deps.store.invoice_sequence(organization.id)
    customers = {
        customer.external_id: customer.as_lago()
        for customer in deps.store.get_customers(
            organization.id, (invoice.external_customer_id for invoice in waiting)
        )
    }
    requested_at = iso(utcnow())
    transaction = Transaction()
    deps.store.stage_invoice_sequence(transaction, organization.id, read, len(waiting))
    events: list[OutboxEvent] = []
    numbered: dict[str, Invoice] = {}
    for offset, invoice in enumerate(waiting, start=1):
        sequence = read + offset
        final = invoice.model_copy(
            update={
                "sequential_id": sequence,
                "number": invoice_number(
                    organization.document_number_prefix, invoice.issuing_date, sequence
                ),
                # In flight from now: the recovery of stuck attempts measures from here.
                **({"attempt_requested_at": requested_at} if invoice.payment_attempts else {}),
            }
        )
        deps.store.stage_invoice(transaction, final, before=None)
        deps.store.stage_numbered(transaction, final)
        kind = "invoice.one_off_created" if final.invoice_type == "one_off" else "invoice.created"
        events.append(
            webhook_event(
                organization.id,
                kind,
                "invoice",
                final.as_lago(customers.get(final.external_customer_id)),
            )
        )
        if final.payment_attempts == 1:
            events.append(payment_requested(final))
        numbered[final.lago_id] = final
    transaction.publish(events)
    deps.store.commit(transaction)
    return numbered


def await_number(deps: Dependencies, organization_id: str, lago_id: str) -> Invoice | None:
    """The invoice once numbered, for a caller that answers with it (the API): numbers it
    here when no one else is at work, else waits for the numberer. None if it never
    waited or was never issued."""
    deadline = time.monotonic() + AWAIT_S
    while True:
        numbered = number_waiting(deps, organization_id).get(lago_id)
        if numbered is not None:
            return numbered
        issued = deps.store.get_invoice(organization_id, lago_id)
        if issued is not None or time.monotonic() >= deadline:
            return issued
        time.sleep(AWAIT_STEP_S)


def number_stranded(deps: Dependencies, now: datetime) -> int:
    """Number what a numberer that stopped half-way left waiting; returns how many."""
    organizations = dict.fromkeys(deps.store.stranded_invoices_to_number(iso(now - STRANDED_AFTER)))
    return sum(len(number_waiting(deps, organization)) for organization in organizations)
