"""Settling invoices from what Stripe says of a PaymentIntent: success, failure, and the
payments Billow will not apply."""

from __future__ import annotations

from typing import Any, Literal

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import stable_id
from billow.domain.customers import Customer
from billow.domain.events import OutboxEvent, internal_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice, failure_applies
from billow.domain.invoices import ProviderError as InvoiceError
from billow.domain.payments import Applied, ProviderPayment, payment_mismatch
from billow.ports import PaymentOutcome, PaymentProvider
from billow.services.payments.checkout_pages import authentication_link, requires_action_event
from billow.services.payments.records import (
    invoice_webhook,
    payment_failure_event,
    save_invoice,
)
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account
from billow.topology import PAYMENT_UNMATCHED

AUTHENTICATION_REQUIRED = "authentication_required"


class UnmatchedPayment(Exception):
    """A PaymentIntent names an invoice it does not pay: recorded and reported, not applied."""

    def __init__(self, reason: str, report: OutboxEvent) -> None:
        super().__init__(reason)
        self.reason = reason
        self.report = report


def settle_success(
    deps: Dependencies,
    organization_id: str,
    invoice_id: str,
    payment_intent_id: str,
    held: tuple[Invoice, Customer] | None = None,
) -> None:
    """Stripe took the money. A second, different payment for a paid invoice is refunded,
    and so is a payment that lands after the invoice was voided (a charge or a link
    payment already under way when it was voided).

    ``held``: the invoice and customer the caller read just before asking Stripe. The
    first write is tried on them (it is conditional on the invoice's version, so a change
    in between fails it); only a retry reads them again."""
    first_try = [held] if held else []

    def record() -> Invoice | None:
        invoice, customer = first_try.pop() if first_try else (None, None)
        if invoice is None:
            invoice = deps.store.invoices.get(organization_id, invoice_id)
        if invoice is None or invoice.payment_status == "succeeded" or invoice.is_voided:
            return invoice
        changes: dict[str, Any] = {
            "payment_status": "succeeded",
            "total_paid_amount_cents": invoice.total_amount_cents,
            "provider_payment_id": payment_intent_id,
            "payment_block": None,
            "last_payment_error": None,
        }
        updated = invoice.model_copy(update=changes)
        if customer is None:
            customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
        return save_invoice(
            deps,
            invoice,
            changes,
            [invoice_webhook(updated, customer, "invoice.payment_status_updated")],
        )

    invoice = retry_on_race(record)
    if invoice is None or not payment_intent_id:
        return
    duplicate = invoice.is_voided or invoice.provider_payment_id != payment_intent_id
    if not duplicate and not invoice.payment_link_session_id:
        return  # the usual case: nothing left to give back or to close, no more reads
    customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
    stripe = stripe_account(deps, customer)
    if stripe is None:
        return
    _, gateway = stripe
    if duplicate:
        # Paid twice (a payment made outside Billow's control crossed Billow's own), or
        # paid after it was voided: give this payment back.
        gateway.refund(payment_intent_id, idempotency_key=f"duplicate-payment-{payment_intent_id}")
    elif invoice.payment_link_session_id:
        gateway.expire_payment_link(invoice.payment_link_session_id)


def settle_failure(
    deps: Dependencies,
    organization_id: str,
    invoice_id: str,
    attempt: int | None,
    outcome: PaymentOutcome,
    *,
    connection_code: str,
    gateway: PaymentProvider | None = None,
    extra_events: list[OutboxEvent] | None = None,
) -> None:
    """A charge failed: ``failed``, and ``invoice.payment_failure`` fans out to webhooks,
    dunning and the finance alert. A stale attempt's failure changes nothing."""
    error = InvoiceError(
        message=outcome.error_message or "The payment failed", error_code=outcome.error_code
    )

    def record() -> str | None:
        """Returns the payment link this failure replaced, if any."""
        invoice = deps.store.invoices.get(organization_id, invoice_id)
        if invoice is None or not failure_applies(invoice, attempt):
            return None
        customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
        changes: dict[str, Any] = {
            "payment_status": "failed",
            "last_payment_error": error,
            "provider_payment_id": outcome.payment_intent_id,
        }
        updated = invoice.model_copy(update=changes)
        events = [
            invoice_webhook(updated, customer, "invoice.payment_status_updated"),
            _failure_webhook(updated, customer, connection_code, error, outcome),
            *(extra_events or []),
        ]
        if outcome.error_code == AUTHENTICATION_REQUIRED and customer is not None:
            link = authentication_link(deps, updated, customer, gateway)
            if link is not None:
                # The double-charge guard must know this link, as any payment link.
                changes["payment_link_session_id"] = link.session_id
            events.append(requires_action_event(updated, customer, connection_code, link))
        save_invoice(deps, invoice, changes, events)
        new_link = changes.get("payment_link_session_id")
        old_link = invoice.payment_link_session_id
        return old_link if new_link and old_link != new_link else None

    replaced = retry_on_race(record)
    if replaced and gateway is not None:
        gateway.expire_payment_link(replaced)  # one open link per invoice at a time


def _failure_webhook(
    invoice: Invoice,
    customer: Customer | None,
    connection_code: str,
    error: InvoiceError,
    outcome: PaymentOutcome,
) -> OutboxEvent:
    return payment_failure_event(
        invoice,
        customer,
        connection_code,
        error.model_dump(),
        {
            "code": outcome.error_code,
            "decline_code": outcome.decline_code,
            "message": outcome.error_message,
            "request_id": outcome.request_id,
            "http_status": outcome.http_status,
        },
    )


def apply_provider_payment(
    deps: Dependencies, connection: StripeConnection, payment: ProviderPayment
) -> Applied:
    """Settle the invoice a PaymentIntent pays, from what Stripe says of it (an event, or a
    lookup by the reconciliation). Raises UnmatchedPayment for one that does not pay it."""
    organization_id = connection.organization_id
    if payment.organization_id != organization_id or not payment.invoice_id:
        return "ignored"
    invoice = deps.store.invoices.get(organization_id, payment.invoice_id)
    if invoice is None:
        return "ignored"
    if payment.succeeded and invoice.provider_payment_id == payment.id:
        return "processed"  # Stripe's echo of a charge Billow recorded already
    if not payment.succeeded and not (payment.failed and payment.attempt is not None):
        return "ignored"  # under way, or a payment link's failed try (its page stays open)
    customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
    problem = payment_mismatch(payment, invoice, customer.stripe_customer_id if customer else None)
    if problem:
        raise UnmatchedPayment(problem, _unmatched_report(invoice, customer, payment, problem))
    if payment.succeeded:
        settle_success(deps, organization_id, invoice.lago_id, payment.id)
        return "processed"
    error_code = payment.error_code or ("canceled" if payment.status == "canceled" else None)
    settle_failure(
        deps,
        organization_id,
        invoice.lago_id,
        payment.attempt,
        PaymentOutcome(
            payment_intent_id=payment.id,
            status="failed",
            error_code=error_code,
            decline_code=payment.decline_code,
            error_message=payment.error_message
            or ("The payment was canceled" if payment.status == "canceled" else None),
        ),
        connection_code=connection.code,
        # Stripe's event may be first to report a 3-D Secure failure: it needs the link too.
        gateway=deps.stripe_for(connection) if error_code == AUTHENTICATION_REQUIRED else None,
    )
    return "processed"


def _unmatched_report(
    invoice: Invoice, customer: Customer | None, payment: ProviderPayment, reason: str
) -> OutboxEvent:
    """For the finance team: money (or a failure) in Stripe that Billow will not apply.
    One report per PaymentIntent and status, however often Stripe tells of it."""
    return internal_event(
        invoice.organization_id,
        PAYMENT_UNMATCHED,
        {
            "reason": reason,
            "provider_payment_id": payment.id,
            "provider_payment_status": payment.status,
            "provider_customer_id": payment.customer,
            "amount_cents": payment.amount,
            "amount_currency": payment.currency.upper(),
            "lago_invoice_id": invoice.lago_id,
            "invoice_number": invoice.number,
            "invoice_total_amount_cents": invoice.total_amount_cents,
            "invoice_currency": invoice.currency,
            "external_customer_id": invoice.external_customer_id,
            "expected_provider_customer_id": customer.stripe_customer_id if customer else None,
        },
        event_id=stable_id(
            "payment-unmatched", invoice.organization_id, payment.id, payment.status
        ),
    )


def report_unmatched(deps: Dependencies, unmatched: UnmatchedPayment) -> None:
    """Publish the report on its own (outside a Stripe event's processing)."""
    transaction = Transaction()
    transaction.publish([unmatched.report])
    deps.store.commit(transaction)


def apply_looked_up(
    deps: Dependencies, connection: StripeConnection, payment: ProviderPayment
) -> Applied | Literal["rejected"]:
    """Apply a PaymentIntent Billow looked up itself; an unmatched one is reported."""
    try:
        return apply_provider_payment(deps, connection, payment)
    except UnmatchedPayment as unmatched:
        report_unmatched(deps, unmatched)
        return "rejected"


def close_payment_link(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, session_id: str
) -> bool:
    """Close a payment link so nobody can pay through it any more. True when the customer
    had already paid through it: that payment is applied here, without waiting for
    Stripe's event (which may never come)."""
    closed = gateway.expire_payment_link(session_id)
    if closed.paid_with is None:
        return False
    apply_looked_up(deps, connection, gateway.payment_intent(closed.paid_with))
    return True


def settle_from_stripe(
    deps: Dependencies, connection: StripeConnection, intent: dict[str, Any]
) -> Applied:
    """``payment_intent.*`` events: matched to the invoice by metadata, within the org, and
    applied only when the PaymentIntent really pays it (see ``payment_mismatch``)."""
    try:
        payment = ProviderPayment.from_stripe(intent)
    except (KeyError, TypeError, ValueError):
        return "ignored"  # not a PaymentIntent Billow could have made
    return apply_provider_payment(deps, connection, payment)
