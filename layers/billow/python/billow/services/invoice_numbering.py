"""Numbering issued invoices: gap-free per organization, without serializing a billing day.

Lago numbers an organization's invoices 1, 2, 3… without a gap or a twin. Taking the next
number in every issuing transaction made concurrent issuers of one organization race for
one item: at the invoice worker's deployed concurrency (20) that was 2.2 failed
transactions per invoice (``bench/invoice_numbers.py``), each decided again from fresh
reads. So the sequence item also carries a lease, and an issuer first reads it:

- Nobody holds the lease (the usual case: one issuer at a time): the issuer commits its
  invoice numbered, in the transaction that issues it, with the sequence's write
  conditional on the number read and on the lease still being free. One read, one write.
- The lease is held, or that write lost a race: it commits its invoice aside, unnumbered
  (``stage_waiting``), with everything else its decision writes. Such issuers
  share no item, so they never collide; then it looks for a numberer (below).

Whoever holds the lease numbers what waits, ``BATCH`` invoices per transaction with one
write of the sequence for all of them, releases the lease and looks once more. An issuer
set aside takes the lease itself when nobody holds it.

Why no invoice is left waiting: an issuer set aside reads the lease only after its
invoice is committed aside. If the lease is held then, the holder's last look comes after
its release, so after that read, and sees the invoice (the look is strongly consistent).
An issuer numbering its own invoice never holds the lease, so nobody waits on it. A
numberer that dies keeps the lease until ``LEASE_MS`` passes; the next issuer of the
organization, or the hourly run's sweep (``number_stranded``), numbers what it left.

The write of the sequence stays conditional on the number read: the lease spares the
races, the condition makes one harmless (a numberer whose lease expired while it worked
loses its batch and reads again), and the lease condition keeps a lone issuer out of a
holder's batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from billow.adapters.invoice_numbering import NumberSequence
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, stable_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ConcurrentUpdate
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
"""A numberer that numbered waiting invoices looks a few more times before it lets go: on
a billing day more arrive every few milliseconds, and each hand-over of the lease is a
moment where two issuers may both try to take it (a failed write each time)."""
CONTENDED_S = 60.0
"""After a sign that others issue for the organization at the same time (a lost race for
the number, or a numberer at work), this process sets its invoices aside for that long
rather than try the numbered write first: on a billing day concurrent issuers would
mostly lose it to each other, a failed transaction each."""
STRANDED_AFTER = timedelta(minutes=5)
AWAIT_S = 10.0
AWAIT_STEP_S = 0.05


def payment_requested(
    invoice: Invoice, redriven_at: str | None = None, connection_code: str | None = None
) -> OutboxEvent:
    """The command the payments consumer acts on; one id per attempt, so a replay is one
    charge. An attempt asked for again (``redriven_at``) is a new message for the same
    attempt: the charge it makes carries the attempt's own idempotency key.
    ``connection_code``: the customer's Stripe connection, when the sender knows it."""
    parts = (invoice.lago_id, str(invoice.payment_attempts))
    return internal_event(
        invoice.organization_id,
        PAYMENT_REQUESTED,
        # ``billow.messages.ChargeRequested``, as a dict: the invoice worker sends it but
        # need not build every queue's message model at import.
        {
            "invoice_id": invoice.lago_id,
            "attempt": invoice.payment_attempts,
            "external_customer_id": invoice.external_customer_id,
            "lago_customer_id": invoice.lago_customer_id,
            "connection_code": connection_code,
        },
        event_id=stable_id("payment-requested", *parts, *([redriven_at] if redriven_at else [])),
    )


_contended_until: dict[str, float] = {}
"""Per organization, until when (``time.monotonic``) this process's issuers go aside."""


def _contended(organization_id: str) -> bool:
    return _contended_until.get(organization_id, 0.0) > time.monotonic()


def _note_contention(organization_id: str) -> None:
    now = time.monotonic()
    for stale in [org for org, until in _contended_until.items() if until <= now]:
        del _contended_until[stale]
    _contended_until[organization_id] = now + CONTENDED_S


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def _take_lease(deps: Dependencies, organization_id: str) -> str | None:
    """The lease's owner id if this caller now holds it; None if a numberer is at work.
    Read first: a held lease is seen without a write, so busy issuers do not collide."""
    now = _now_ms()
    if deps.store.numbering.get_sequence(organization_id).held(now):
        return None
    owner = new_id()
    if deps.store.numbering.take_lease(organization_id, owner, now, now + LEASE_MS):
        return owner
    return None  # taken since the read: that numberer looks after it took the lease


def commit_issued(
    deps: Dependencies,
    organization: Organization,
    invoice: Invoice,
    customer: Customer,
    stage_rest: Callable[[Transaction], list[OutboxEvent]],
    sequence: NumberSequence | None = None,
) -> Invoice:
    """Commit a newly issued invoice with the writes its decision makes (``stage_rest``
    stages them and returns their events) and give it its number: in the same transaction
    when no numberer is at work, else it waits for the numberer at work. Returns the
    invoice, numbered unless it waits. ``sequence``: the sequence as the caller read it
    already (else it is read here).

    Raises ConcurrentUpdate when what the decision was made on changed (or the invoice
    was issued already): the caller reads again."""
    if not _contended(organization.id):
        now = _now_ms()
        sequence = sequence or deps.store.numbering.get_sequence(organization.id)
        if not sequence.held(now):
            final = _numbered(organization, invoice, sequence.value + 1, iso(utcnow()))
            transaction = Transaction()
            deps.store.numbering.stage_sequence(
                transaction, organization.id, sequence.value, 1, unheld_at=now
            )
            deps.store.invoices.stage(transaction, final, before=None)
            deps.store.numbering.stage_not_waiting(transaction, final)
            transaction.publish([*stage_rest(transaction), *_announced(final, customer)])
            try:
                deps.store.commit(transaction)
            except ConcurrentUpdate:
                pass  # another issuer took the number, or a numberer the lease
            else:
                return final
        _note_contention(organization.id)
    transaction = Transaction()
    deps.store.numbering.stage_waiting(transaction, invoice, queued_at=iso(utcnow()))
    transaction.publish(stage_rest(transaction))
    deps.store.commit(transaction)
    return number_waiting(deps, organization.id).get(invoice.lago_id, invoice)


def number_waiting(deps: Dependencies, organization_id: str) -> dict[str, Invoice]:
    """Number every invoice the organization has waiting, unless a numberer is at work (it
    will number them). Returns the invoices this call numbered, by id."""
    numbered: dict[str, Invoice] = {}
    deadline = time.monotonic() + WORK_S
    while deps.store.numbering.list_waiting(organization_id, 1):
        owner = _take_lease(deps, organization_id)
        if owner is None:
            break
        try:
            organization = deps.store.organizations.get(organization_id)
            if organization is not None:
                numbered.update(_number_all(deps, organization, deadline))
        finally:
            deps.store.numbering.release_lease(organization_id, owner)
        if organization is None or time.monotonic() >= deadline:
            break
    return numbered


def _number_all(
    deps: Dependencies, organization: Organization, deadline: float
) -> dict[str, Invoice]:
    """As the lease's holder: number batches until nothing waits (or ``deadline``)."""
    numbered: dict[str, Invoice] = {}
    idle = 0
    while time.monotonic() < deadline:
        batch = retry_on_race(lambda: _number_next(deps, organization))
        numbered.update(batch)
        if batch:
            idle = 0
        elif numbered and idle < LINGER_LOOKS:
            idle += 1  # others are issuing: keep the lease rather than hand it over
            time.sleep(LINGER_S)
        else:
            break
    return numbered


def _numbered(
    organization: Organization, invoice: Invoice, sequence: int, requested_at: str
) -> Invoice:
    return invoice.model_copy(
        update={
            "sequential_id": sequence,
            "number": invoice_number(
                organization.document_number_prefix, invoice.issuing_date, sequence
            ),
            # In flight from now: the recovery of stuck attempts measures from here.
            **({"attempt_requested_at": requested_at} if invoice.payment_attempts else {}),
        }
    )


def _announced(invoice: Invoice, customer: Customer | None) -> list[OutboxEvent]:
    """A numbered invoice's webhook, and its charge when one is due (naming the Stripe
    connection the customer pays through)."""
    kind = "invoice.one_off_created" if invoice.invoice_type == "one_off" else "invoice.created"
    shown = customer.as_lago() if customer else None
    events = [webhook_event(invoice.organization_id, kind, "invoice", invoice.as_lago(shown))]
    if invoice.payment_attempts == 1:
        code = customer.billing_configuration.payment_provider_code if customer else None
        events.append(payment_requested(invoice, connection_code=code))
    return events


def _number_next(deps: Dependencies, organization: Organization) -> dict[str, Invoice]:
    """Number up to ``BATCH`` waiting invoices in one transaction, in the order of their ids."""
    waiting = deps.store.numbering.list_waiting(organization.id, BATCH)
    if not waiting:
        return {}
    read = deps.store.numbering.get_sequence(organization.id).value
    customers = {
        customer.external_id: customer
        for customer in deps.store.customers.get_many(
            organization.id, (invoice.external_customer_id for invoice in waiting)
        )
    }
    requested_at = iso(utcnow())
    transaction = Transaction()
    deps.store.numbering.stage_sequence(transaction, organization.id, read, len(waiting))
    events: list[OutboxEvent] = []
    numbered: dict[str, Invoice] = {}
    for offset, invoice in enumerate(waiting, start=1):
        final = _numbered(organization, invoice, read + offset, requested_at)
        deps.store.invoices.stage(transaction, final, before=None)
        deps.store.numbering.stage_numbered(transaction, final)
        events += _announced(final, customers.get(final.external_customer_id))
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
        issued = deps.store.invoices.get(organization_id, lago_id)
        if issued is not None or time.monotonic() >= deadline:
            return issued
        time.sleep(AWAIT_STEP_S)


def number_stranded(deps: Dependencies, now: datetime) -> int:
    """Number what a numberer that stopped half-way left waiting; returns how many."""
    organizations = dict.fromkeys(deps.store.numbering.list_stranded(iso(now - STRANDED_AFTER)))
    return sum(len(number_waiting(deps, organization)) for organization in organizations)
