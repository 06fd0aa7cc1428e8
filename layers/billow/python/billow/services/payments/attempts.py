"""Charge attempts: starting one, the one in flight, and asking Stripe about it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from billow.adapters.billing_records import AWAITING_PAYMENT_METHOD
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import NotAllowed
from billow.domain.events import OutboxEvent
from billow.domain.invoices import Invoice
from billow.services.invoice_numbering import payment_requested
from billow.services.payments.records import get_invoice, save_invoice
from billow.services.payments.settlement import apply_looked_up
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account

IN_FLIGHT_GRACE = timedelta(hours=1)
"""How long Stripe may stay silent about an attempt before Billow asks it. Far longer than
a charge can take (the payments function times out after a minute), so an attempt older
than this is not being charged at this moment by a first delivery of its message."""
CLOCK_SKEW = timedelta(minutes=5)
"""Looking for an attempt's PaymentIntent, Stripe's clock may be this far behind ours."""

Reconciled = Literal["settled", "in_progress", "not_in_stripe"]


def in_flight_refusal() -> NotAllowed:
    """Lago's answer to a retry while a payment is under way; Billow gives it to a new
    payment link too, for the same reason."""
    return NotAllowed("payment_processor_is_currently_handling_payment")


def require_unpaid(invoice: Invoice) -> None:
    """Lago's 405 for retrying an invoice that is not finalized, or paid already."""
    if not invoice.is_payable:
        raise NotAllowed("invalid_status")


def request_attempt(
    deps: Dependencies,
    organization_id: str,
    invoice_id: str,
    *,
    after_attempt: int | None = None,
) -> Invoice:
    """Start a new charge attempt (manual retry, dunning, a payment method arriving).

    ``after_attempt`` makes the request conditional: dunning retries only if nothing else
    started an attempt since the failure it planned for. A manual retry while an attempt is
    in flight is refused, unless Stripe has been silent about it for IN_FLIGHT_GRACE: then
    Stripe is asked, and the attempt is settled from its answer or, if Stripe never saw it,
    asked for again under its own key.
    """
    if after_attempt is None:
        invoice = get_invoice(deps, organization_id, invoice_id)
        require_unpaid(invoice)
        if invoice.payment_in_flight:
            now = utcnow()
            resolved = resolve_in_flight(deps, invoice, now)
            if resolved == "not_in_stripe":
                return redrive_attempt(deps, invoice, now)
            if resolved != "settled":
                raise in_flight_refusal()

    def record() -> Invoice:
        invoice = get_invoice(deps, organization_id, invoice_id)
        require_unpaid(invoice)
        if after_attempt is not None and invoice.payment_attempts != after_attempt:
            return invoice
        if invoice.payment_in_flight:
            if after_attempt is not None:
                return invoice  # an attempt is under way already
            raise in_flight_refusal()
        changes: dict[str, Any] = {
            "payment_attempts": invoice.payment_attempts + 1,
            "payment_status": "pending",
            "payment_block": None,
            "provider_payment_id": None,
            "attempt_requested_at": iso(utcnow()),
        }
        return save_invoice(
            deps, invoice, changes, [payment_requested(invoice.model_copy(update=changes))]
        )

    return retry_on_race(record)


def stage_awaiting_invoices(
    deps: Dependencies, transaction: Transaction, customer: Customer
) -> list[OutboxEvent]:
    """A payment method arrived: every invoice that waited for one gets a charge attempt,
    in the same transaction that records the method."""
    events = []
    now = iso(utcnow())
    for invoice in deps.store.invoices.list_awaiting_payment_method(
        customer.organization_id, customer.lago_id
    ):
        if not invoice.is_payable or invoice.payment_block not in AWAITING_PAYMENT_METHOD:
            continue
        updated = invoice.model_copy(
            update={
                "payment_attempts": invoice.payment_attempts + 1,
                "payment_block": None,
                "provider_payment_id": None,
                "attempt_requested_at": now,
                "version": invoice.version + 1,
                "updated_at": now,
            }
        )
        deps.store.invoices.stage(transaction, updated, before=invoice)
        events.append(payment_requested(updated))
    return events


def resolve_in_flight(deps: Dependencies, invoice: Invoice, now: datetime) -> Reconciled:
    """What a request that would compete with the attempt in flight may do: while the
    attempt is young it may be charging right now (``in_progress``); an older one is looked
    up in Stripe."""
    if now - parse_iso(invoice.in_flight_since) < IN_FLIGHT_GRACE:
        return "in_progress"
    return reconcile_attempt(deps, invoice)


def reconcile_attempt(deps: Dependencies, invoice: Invoice) -> Reconciled:
    """Ask Stripe what became of the attempt in flight, and settle the invoice from that.

    ``not_in_stripe``: Stripe has no PaymentIntent for it (its message was lost, or it
    never got past a block); ``in_progress``: Stripe has one still under way (or one Billow
    will not apply, which is reported).
    """
    customer = deps.store.customers.get(invoice.organization_id, invoice.external_customer_id)
    stripe = stripe_account(deps, customer)
    if customer is None or stripe is None:
        return "not_in_stripe"
    connection, gateway = stripe
    assert customer.stripe_customer_id
    payment = (
        gateway.payment_intent(invoice.provider_payment_id) if invoice.provider_payment_id else None
    )
    if payment is None or payment.attempt != invoice.payment_attempts:
        since = parse_iso(invoice.in_flight_since) - CLOCK_SKEW
        payment = gateway.find_attempt_payment(
            customer.stripe_customer_id,
            invoice.lago_id,
            invoice.payment_attempts,
            int(since.timestamp()),
        )
    if payment is None:
        return "not_in_stripe"
    outcome = apply_looked_up(deps, connection, payment)
    return "settled" if outcome == "processed" else "in_progress"


def redrive_attempt(deps: Dependencies, invoice: Invoice, now: datetime) -> Invoice:
    """Ask for the attempt in flight once more. It keeps its number, so its idempotency
    key: if the first request is in fact still on its way, Stripe makes them one charge."""

    def record() -> Invoice:
        current = get_invoice(deps, invoice.organization_id, invoice.lago_id)
        if not current.payment_in_flight or current.payment_attempts != invoice.payment_attempts:
            return current
        changes = {"attempt_requested_at": iso(now)}
        command = payment_requested(current.model_copy(update=changes), redriven_at=iso(now))
        return save_invoice(deps, current, changes, [command])

    return retry_on_race(record)
