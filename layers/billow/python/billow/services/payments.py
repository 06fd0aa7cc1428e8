"""Charging invoices through Stripe, and settling them from what Stripe reports.

How an invoice is paid at most once, with no refund needed:

- Charge attempt ``n`` of an invoice is one PaymentIntent created with the idempotency
  key ``invoice-payment-{invoice}-{n}``: a retried message, a crash after Stripe answered,
  or two consumers racing all reach the same PaymentIntent.
- An attempt is *in flight* from the moment it is requested until its outcome is known.
  While it is, nothing else may start taking money: a manual retry and a new payment link
  are refused (``payment_processing``). An attempt Stripe has been silent about for an hour
  is looked up in Stripe and settled from what Stripe says; one Stripe never saw is asked
  for again under its own key, never replaced by a new attempt, so a charge still under
  way and its replay become one PaymentIntent.
- Before charging, the invoice's open payment link is closed in Stripe. If the customer
  already paid through it, that payment settles the invoice and nothing is charged.
- Only a PaymentIntent Billow created for the invoice (an attempt or the payment link),
  for the invoice's customer, currency and whole amount, settles it; anything else is
  recorded and reported to the finance team, never applied.
- Payment status only moves forward: ``succeeded`` is final, and a failure counts only
  for the attempt in flight. A payment that still lands twice (a payment made outside
  Billow's control, or after the invoice was voided) is refunded.
- A refusal Stripe will repeat (a revoked key, a missing permission, a customer or card
  Stripe no longer has) fails the attempt at once, visibly, instead of being retried.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any, Literal

from billow.adapters.billing_records import AWAITING_PAYMENT_METHOD
from billow.adapters.dynamodb import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso, stable_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import (
    ConcurrentUpdate,
    NotAllowed,
    NotFound,
    ProviderError,
    ValidationFailed,
)
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice, PaymentBlock, failure_applies
from billow.domain.invoices import ProviderError as InvoiceError
from billow.domain.payments import ProviderPayment, payment_mismatch
from billow.ports import PaymentLink, PaymentOutcome, PaymentProvider
from billow.services.invoicing import payment_requested, retry_on_race
from billow.services.stripe_connection import connection_for, provider_error_event
from billow.topology import PAYMENT_UNMATCHED

AUTHENTICATION_REQUIRED = "authentication_required"
IN_FLIGHT_GRACE = timedelta(hours=1)
"""How long Stripe may stay silent about an attempt before Billow asks it. Far longer than
a charge can take (the payments function times out after a minute), so an attempt older
than this is not being charged at this moment by a first delivery of its message."""
CLOCK_SKEW = timedelta(minutes=5)
"""Looking for an attempt's PaymentIntent, Stripe's clock may be this far behind ours."""

Reconciled = Literal["settled", "in_progress", "not_in_stripe"]


class UnmatchedPayment(Exception):
    """A PaymentIntent names an invoice it does not pay: recorded and reported, not applied."""

    def __init__(self, reason: str, report: OutboxEvent) -> None:
        super().__init__(reason)
        self.reason = reason
        self.report = report


def _metadata(invoice: Invoice, attempt: int | None) -> dict[str, str]:
    """Links a PaymentIntent back to Billow, so an event that outruns our write still matches."""
    metadata = {
        "lago_invoice_id": invoice.lago_id,
        "lago_customer_id": invoice.lago_customer_id,
        "lago_organization_id": invoice.organization_id,
        "invoice_number": invoice.number,
        "invoice_type": invoice.invoice_type,
        "invoice_issuing_date": invoice.issuing_date,
    }
    if attempt is not None:
        metadata["payment_attempt"] = str(attempt)
    return metadata


def _get_invoice(deps: Dependencies, organization_id: str, invoice_id: str) -> Invoice:
    invoice = deps.store.get_invoice(organization_id, invoice_id)
    if invoice is None:
        raise NotFound("invoice")
    return invoice


def _save(
    deps: Dependencies, invoice: Invoice, changes: dict[str, Any], events: list[OutboxEvent]
) -> Invoice:
    updated = invoice.model_copy(
        update={**changes, "version": invoice.version + 1, "updated_at": iso(utcnow())}
    )
    transaction = Transaction()
    deps.store.stage_invoice(transaction, updated, expected_version=invoice.version)
    transaction.publish(events)
    deps.store.commit(transaction)
    return updated


def stripe_account(
    deps: Dependencies, customer: Customer | None
) -> tuple[StripeConnection, PaymentProvider] | None:
    if customer is None or not customer.stripe_customer_id:
        return None
    connection = connection_for(
        deps, customer.organization_id, customer.billing_configuration.payment_provider_code
    )
    return (connection, deps.stripe_for(connection)) if connection else None


def _payment_method_id(deps: Dependencies, customer: Customer, invoice: Invoice) -> str | None:
    """The invoice's assigned method, else the customer's default (Billow's copy: no call)."""
    methods = deps.store.list_payment_methods(customer)
    chosen = invoice.payment_method.payment_method_id if invoice.payment_method else None
    for method in methods:
        if (chosen and method.lago_id == chosen) or (not chosen and method.is_default):
            return method.provider_method_id
    return None


def _processing() -> NotAllowed:
    """Lago's answer to a retry while a payment is under way; Billow gives it to a new
    payment link too, for the same reason."""
    return NotAllowed("payment_processor_is_currently_handling_payment")


def _not_payable_by_link() -> ValidationFailed:
    return ValidationFailed({"base": ["invalid_invoice_status_or_payment_status"]})


# -- charging --------------------------------------------------------------------------------


def charge(deps: Dependencies, organization_id: str, invoice_id: str, attempt: int) -> str:
    """Make charge attempt ``attempt`` of an invoice; returns what happened, for the logs."""
    invoice = deps.store.get_invoice(organization_id, invoice_id)
    if invoice is None or not invoice.is_payable or invoice.payment_attempts != attempt:
        return "stale"
    if invoice.payment_block in {"manual", "skip_psp"}:
        return "not_charged"
    if not invoice.payment_in_flight:
        return "stale"  # this attempt's outcome is already known: a redelivered message
    customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
    stripe = stripe_account(deps, customer)
    if customer is None or stripe is None:
        _block(deps, invoice, "no_payment_provider")
        return "no_payment_provider"
    connection, gateway = stripe
    method_id = _payment_method_id(deps, customer, invoice)
    if method_id is None:
        _block(deps, invoice, "no_payment_method")
        return "no_payment_method"
    assert customer.stripe_customer_id
    try:
        not_now = _close_link_before_charging(deps, connection, gateway, invoice)
        if not_now:
            return not_now
        outcome = gateway.create_payment_intent(
            customer_id=customer.stripe_customer_id,
            payment_method_id=method_id,
            amount=invoice.total_due_amount_cents,
            currency=invoice.currency,
            description=f"Invoice {invoice.number}",
            metadata=_metadata(invoice, attempt),
            manual_capture=False,
            idempotency_key=f"invoice-payment-{invoice.lago_id}-{attempt}",
        )
    except ProviderError as refused:
        if refused.retryable:
            raise  # Stripe is unavailable: the queue delivers the message again
        _fail_on_refusal(deps, connection, invoice, attempt, refused)
        return "refused"
    if outcome.status == "succeeded":
        settle_success(deps, organization_id, invoice_id, outcome.payment_intent_id or "")
        return "succeeded"
    if outcome.failed:
        settle_failure(
            deps,
            organization_id,
            invoice_id,
            attempt,
            outcome,
            connection_code=connection.code,
            gateway=gateway,
        )
        return "failed"
    retry_on_race(lambda: _note_in_flight(deps, organization_id, invoice_id, attempt, outcome))
    return outcome.status


def _close_link_before_charging(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, invoice: Invoice
) -> str | None:
    """Close the invoice's payment link in Stripe before charging: from then on the charge
    is the only way to pay. Returns why not to charge (the customer paid through the link
    first, or the invoice moved on), or None to go ahead."""
    current = invoice
    while current.payment_link_session_id:
        closed = gateway.expire_payment_link(current.payment_link_session_id)
        if closed.paid_with:
            _apply_outside_events(deps, connection, gateway.payment_intent(closed.paid_with))
            return "paid_by_link"
        try:
            current = _save(deps, current, {"payment_link_session_id": None}, [])
        except ConcurrentUpdate:
            fresh = deps.store.get_invoice(invoice.organization_id, invoice.lago_id)
            if (
                fresh is None
                or not fresh.payment_in_flight
                or fresh.payment_attempts != invoice.payment_attempts
            ):
                return "stale"
            current = fresh
    return None


def _fail_on_refusal(
    deps: Dependencies,
    connection: StripeConnection,
    invoice: Invoice,
    attempt: int,
    refused: ProviderError,
) -> None:
    """Stripe refused in a way it will repeat for this attempt (its key revoked or lacking
    a permission, a customer or card it no longer has, an amount it will not take). Retrying
    the message would only repeat it: the attempt fails now, with Stripe's error, so the
    invoice, its webhooks, dunning and the finance team all show it; a broken key is also
    ``payment_provider.error``. A retry works as soon as the cause is fixed."""
    settle_failure(
        deps,
        invoice.organization_id,
        invoice.lago_id,
        attempt,
        PaymentOutcome(
            payment_intent_id=None,
            status="failed",
            error_code=refused.code or refused.kind,
            error_message=refused.message,
            request_id=refused.request_id,
            http_status=refused.http_status,
        ),
        connection_code=connection.code,
        extra_events=[provider_error_event(connection, refused)]
        if refused.rejects_credentials
        else [],
    )


def _note_in_flight(
    deps: Dependencies, organization_id: str, invoice_id: str, attempt: int, outcome: PaymentOutcome
) -> None:
    invoice = _get_invoice(deps, organization_id, invoice_id)
    if invoice.payment_attempts == attempt and invoice.payment_in_flight:
        _save(deps, invoice, {"provider_payment_id": outcome.payment_intent_id}, [])


def _block(deps: Dependencies, invoice: Invoice, reason: PaymentBlock) -> None:
    """No way to charge yet: the invoice stays ``pending`` (as Lago does, no failure webhook)."""

    def record() -> bool:
        current = _get_invoice(deps, invoice.organization_id, invoice.lago_id)
        if current.payment_attempts == invoice.payment_attempts and current.payment_in_flight:
            _save(deps, current, {"payment_block": reason}, [])
            return True
        return False

    if not retry_on_race(record) or reason != "no_payment_method":
        return
    # A card saved between our look and this write found no invoice waiting for it: look
    # once more now that the wait is recorded (a card saved later finds the invoice).
    customer = deps.store.get_customer(invoice.organization_id, invoice.external_customer_id)
    if customer is not None and _payment_method_id(deps, customer, invoice) is not None:
        with contextlib.suppress(ValidationFailed):  # paid or voided meanwhile
            request_attempt(
                deps,
                invoice.organization_id,
                invoice.lago_id,
                after_attempt=invoice.payment_attempts,
            )


# -- settling --------------------------------------------------------------------------------


def _invoice_webhook(invoice: Invoice, customer: Customer | None, webhook_type: str) -> OutboxEvent:
    return webhook_event(
        invoice.organization_id,
        webhook_type,
        "invoice",
        invoice.as_lago(customer.as_lago() if customer else None),
    )


def settle_success(
    deps: Dependencies, organization_id: str, invoice_id: str, payment_intent_id: str
) -> None:
    """Stripe took the money. A second, different payment for a paid invoice is refunded,
    and so is a payment that lands after the invoice was voided (a charge or a link
    payment already under way when it was voided)."""

    def record() -> Invoice | None:
        invoice = deps.store.get_invoice(organization_id, invoice_id)
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
        customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
        return _save(
            deps,
            invoice,
            changes,
            [_invoice_webhook(updated, customer, "invoice.payment_status_updated")],
        )

    invoice = retry_on_race(record)
    if invoice is None or not payment_intent_id:
        return
    duplicate = invoice.is_voided or invoice.provider_payment_id != payment_intent_id
    if not duplicate and not invoice.payment_link_session_id:
        return  # the usual case: nothing left to give back or to close, no more reads
    customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
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
        invoice = deps.store.get_invoice(organization_id, invoice_id)
        if invoice is None or not failure_applies(invoice, attempt):
            return None
        customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
        changes: dict[str, Any] = {
            "payment_status": "failed",
            "last_payment_error": error,
            "provider_payment_id": outcome.payment_intent_id,
        }
        updated = invoice.model_copy(update=changes)
        events = [
            _invoice_webhook(updated, customer, "invoice.payment_status_updated"),
            _failure_webhook(updated, customer, connection_code, error, outcome),
            *(extra_events or []),
        ]
        if outcome.error_code == AUTHENTICATION_REQUIRED and customer is not None:
            link = _authentication_link(deps, updated, customer, gateway)
            if link is not None:
                # The double-charge guard must know this link, as any payment link.
                changes["payment_link_session_id"] = link.session_id
            events.append(_requires_action(updated, customer, connection_code, link))
        _save(deps, invoice, changes, events)
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
    return webhook_event(
        invoice.organization_id,
        "invoice.payment_failure",
        "payment_provider_invoice_payment_error",
        {
            "lago_invoice_id": invoice.lago_id,
            "lago_customer_id": invoice.lago_customer_id,
            "external_customer_id": invoice.external_customer_id,
            "provider_customer_id": customer.stripe_customer_id if customer else None,
            "payment_provider": "stripe",
            "payment_provider_code": connection_code,
            "provider_error": error.model_dump(),
            "error_details": {
                "code": outcome.error_code,
                "decline_code": outcome.decline_code,
                "message": outcome.error_message,
                "request_id": outcome.request_id,
                "http_status": outcome.http_status,
            },
        },
    )


def apply_provider_payment(
    deps: Dependencies, connection: StripeConnection, payment: ProviderPayment
) -> str:
    """Settle the invoice a PaymentIntent pays, from what Stripe says of it (an event, or a
    lookup by the reconciliation). Raises UnmatchedPayment for one that does not pay it."""
    organization_id = connection.organization_id
    if payment.organization_id != organization_id or not payment.invoice_id:
        return "ignored"
    invoice = deps.store.get_invoice(organization_id, payment.invoice_id)
    if invoice is None:
        return "ignored"
    if payment.succeeded and invoice.provider_payment_id == payment.id:
        return "processed"  # Stripe's echo of a charge Billow recorded already
    if not payment.succeeded and not (payment.failed and payment.attempt is not None):
        return "ignored"  # under way, or a payment link's failed try (its page stays open)
    customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
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


def _apply_outside_events(
    deps: Dependencies, connection: StripeConnection, payment: ProviderPayment
) -> str:
    """Apply a PaymentIntent Billow looked up itself; an unmatched one is reported."""
    try:
        return apply_provider_payment(deps, connection, payment)
    except UnmatchedPayment as unmatched:
        report_unmatched(deps, unmatched)
        return "rejected"


def settle_from_stripe(
    deps: Dependencies, connection: StripeConnection, intent: dict[str, Any]
) -> str:
    """``payment_intent.*`` events: matched to the invoice by metadata, within the org, and
    applied only when the PaymentIntent really pays it (see ``payment_mismatch``)."""
    try:
        payment = ProviderPayment.from_stripe(intent)
    except (KeyError, TypeError, ValueError):
        return "ignored"  # not a PaymentIntent Billow could have made
    return apply_provider_payment(deps, connection, payment)


# -- payment links -----------------------------------------------------------------------


def _link(
    deps: Dependencies,
    gateway: PaymentProvider,
    invoice: Invoice,
    stripe_customer_id: str,
    idempotency_key: str,
) -> PaymentLink:
    """A Stripe Checkout page (payment mode) for what the invoice still owes."""
    return gateway.create_payment_link(
        customer_id=stripe_customer_id,
        amount=invoice.total_due_amount_cents,
        currency=invoice.currency,
        product_name=invoice.number,
        description=f"Invoice {invoice.number}",
        metadata=_metadata(invoice, None) | {"payment_type": "one-time"},
        success_url=f"{deps.settings.public_api_url}/checkout/completed",
        idempotency_key=idempotency_key,
    )


def _authentication_link(
    deps: Dependencies, invoice: Invoice, customer: Customer, gateway: PaymentProvider | None
) -> PaymentLink | None:
    """The card needs the customer present (3-D Secure): a payment link is where they can
    authenticate."""
    if gateway is None or not customer.stripe_customer_id:
        return None
    return _link(
        deps,
        gateway,
        invoice,
        customer.stripe_customer_id,
        f"invoice-authentication-{invoice.lago_id}-{invoice.payment_attempts}",
    )


def _requires_action(
    invoice: Invoice, customer: Customer, connection_code: str, link: PaymentLink | None
) -> OutboxEvent:
    """Lago's ``payment.requires_action``, pointing at the authentication link."""
    url = link.url if link else None
    return webhook_event(
        invoice.organization_id,
        "payment.requires_action",
        "payment",
        {
            "lago_id": stable_id("payment", invoice.lago_id, str(invoice.payment_attempts)),
            "lago_customer_id": invoice.lago_customer_id,
            "external_customer_id": invoice.external_customer_id,
            "invoice_ids": [invoice.lago_id],
            "invoice_numbers": [invoice.number],
            "lago_payable_id": invoice.lago_id,
            "payable_type": "Invoice",
            "amount_cents": invoice.total_due_amount_cents,
            "amount_currency": invoice.currency,
            "status": "requires_action",
            "payment_status": "processing",
            "type": "provider",
            "reference": invoice.number,
            "payment_provider_code": connection_code,
            "payment_provider_type": "stripe",
            "external_payment_id": invoice.provider_payment_id,
            "provider_payment_id": invoice.provider_payment_id,
            "provider_customer_id": customer.stripe_customer_id,
            "next_action": (
                {"type": "redirect_to_url", "redirect_to_url": {"url": url}} if url else {}
            ),
            "created_at": iso(utcnow()),
        },
    )


def _require_unpaid(invoice: Invoice) -> None:
    """Lago's 405 for retrying an invoice that is not finalized, or paid already."""
    if not invoice.is_payable:
        raise NotAllowed("invalid_status")


def payment_url(deps: Dependencies, organization_id: str, invoice_id: str) -> dict[str, object]:
    """A Stripe Checkout page where the customer pays a pending or failed invoice.

    Refused while an attempt is in flight: the attempt may be charging the card right now,
    and a link paid meanwhile would take the money twice."""

    def create() -> dict[str, object]:
        invoice = _get_invoice(deps, organization_id, invoice_id)
        if not invoice.is_payable:
            raise _not_payable_by_link()
        if invoice.payment_in_flight:
            if _resolve_in_flight(deps, invoice, utcnow()) != "settled":
                raise _processing()
            invoice = _get_invoice(deps, organization_id, invoice_id)
            if not invoice.is_payable:
                raise _not_payable_by_link()
        customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
        stripe = stripe_account(deps, customer)
        if customer is None or stripe is None or not customer.stripe_customer_id:
            raise ValidationFailed(
                {"base": ["no_linked_payment_provider"]}, code="missing_payment_provider"
            )
        connection, gateway = stripe
        if invoice.payment_link_session_id:
            closed = gateway.expire_payment_link(invoice.payment_link_session_id)
            if closed.paid_with:
                _apply_outside_events(deps, connection, gateway.payment_intent(closed.paid_with))
                raise _not_payable_by_link()
        link = _link(
            deps,
            gateway,
            invoice,
            customer.stripe_customer_id,
            f"invoice-payment-link-{invoice.lago_id}-{invoice.version}",
        )
        try:
            _save(deps, invoice, {"payment_link_session_id": link.session_id}, [])
        except ConcurrentUpdate:
            gateway.expire_payment_link(link.session_id)  # nobody has seen it yet
            raise
        return {
            "lago_customer_id": invoice.lago_customer_id,
            "lago_invoice_id": invoice.lago_id,
            "external_customer_id": invoice.external_customer_id,
            "payment_provider": "stripe",
            "payment_url": link.url,
        }

    return retry_on_race(create)


# -- attempts ----------------------------------------------------------------------------


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
        invoice = _get_invoice(deps, organization_id, invoice_id)
        _require_unpaid(invoice)
        if invoice.payment_in_flight:
            now = utcnow()
            resolved = _resolve_in_flight(deps, invoice, now)
            if resolved == "not_in_stripe":
                return redrive_attempt(deps, invoice, now)
            if resolved != "settled":
                raise _processing()

    def record() -> Invoice:
        invoice = _get_invoice(deps, organization_id, invoice_id)
        _require_unpaid(invoice)
        if after_attempt is not None and invoice.payment_attempts != after_attempt:
            return invoice
        if invoice.payment_in_flight:
            if after_attempt is not None:
                return invoice  # an attempt is under way already
            raise _processing()
        changes: dict[str, Any] = {
            "payment_attempts": invoice.payment_attempts + 1,
            "payment_status": "pending",
            "payment_block": None,
            "provider_payment_id": None,
            "attempt_requested_at": iso(utcnow()),
        }
        return _save(
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
    for invoice in deps.store.invoices_awaiting_payment_method(
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
        deps.store.stage_invoice(transaction, updated, expected_version=invoice.version)
        events.append(payment_requested(updated))
    return events


def _resolve_in_flight(deps: Dependencies, invoice: Invoice, now: datetime) -> Reconciled:
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
    customer = deps.store.get_customer(invoice.organization_id, invoice.external_customer_id)
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
    outcome = _apply_outside_events(deps, connection, payment)
    return "settled" if outcome == "processed" else "in_progress"


def redrive_attempt(deps: Dependencies, invoice: Invoice, now: datetime) -> Invoice:
    """Ask for the attempt in flight once more. It keeps its number, so its idempotency
    key: if the first request is in fact still on its way, Stripe makes them one charge."""

    def record() -> Invoice:
        current = _get_invoice(deps, invoice.organization_id, invoice.lago_id)
        if not current.payment_in_flight or current.payment_attempts != invoice.payment_attempts:
            return current
        changes = {"attempt_requested_at": iso(now)}
        command = payment_requested(current.model_copy(update=changes), redriven_at=iso(now))
        return _save(deps, current, changes, [command])

    return retry_on_race(record)


def void(deps: Dependencies, organization_id: str, invoice_id: str) -> Invoice:
    """Void a finalized, unpaid invoice; its payment link closes so nobody can still pay it."""

    def record() -> Invoice:
        invoice = _get_invoice(deps, organization_id, invoice_id)
        if invoice.status != "finalized" or invoice.payment_status == "succeeded":
            raise NotAllowed("not_voidable")
        updated = invoice.model_copy(update={"status": "voided", "voided_at": iso(utcnow())})
        customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
        return _save(
            deps,
            invoice,
            {"status": "voided", "voided_at": updated.voided_at},
            [_invoice_webhook(updated, customer, "invoice.voided")],
        )

    voided = retry_on_race(record)
    if voided.payment_link_session_id:
        customer = deps.store.get_customer(organization_id, voided.external_customer_id)
        stripe = stripe_account(deps, customer)
        if stripe is not None:
            stripe[1].expire_payment_link(voided.payment_link_session_id)
    return voided
