"""Charging invoices through Stripe, and settling them from what Stripe reports.

Every charge attempt ``n`` of an invoice is one PaymentIntent created with the idempotency
key ``invoice-payment-{invoice}-{n}``: a retried message, a crash after Stripe answered, or
two consumers racing all reach the same PaymentIntent. Payment status only moves forward:
``succeeded`` is final, and a failure counts only for the attempt in flight.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from billow.adapters.billing_records import AWAITING_PAYMENT_METHOD
from billow.adapters.dynamodb import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso, stable_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ConcurrentUpdate, NotAllowed, NotFound, ValidationFailed
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice, PaymentBlock, ProviderError, failure_applies
from billow.ports import PaymentLink, PaymentOutcome, PaymentProvider
from billow.services.invoicing import payment_requested, retry_on_race
from billow.services.stripe_connection import connection_for

AUTHENTICATION_REQUIRED = "authentication_required"


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


def charge(deps: Dependencies, organization_id: str, invoice_id: str, attempt: int) -> str:
    """Make charge attempt ``attempt`` of an invoice; returns what happened, for the logs."""
    invoice = deps.store.get_invoice(organization_id, invoice_id)
    if invoice is None or not invoice.is_payable or invoice.payment_attempts != attempt:
        return "stale"
    if invoice.payment_block in {"manual", "skip_psp"}:
        return "not_charged"
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
    if invoice.payment_link_session_id and not gateway.expire_payment_link(
        invoice.payment_link_session_id
    ):
        return "paid_by_link"  # the link's own payment_intent.succeeded settles the invoice
    assert customer.stripe_customer_id
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


def _note_in_flight(
    deps: Dependencies, organization_id: str, invoice_id: str, attempt: int, outcome: PaymentOutcome
) -> None:
    invoice = _get_invoice(deps, organization_id, invoice_id)
    if invoice.payment_attempts == attempt and invoice.payment_status == "pending":
        _save(deps, invoice, {"provider_payment_id": outcome.payment_intent_id}, [])


def _block(deps: Dependencies, invoice: Invoice, reason: PaymentBlock) -> None:
    """No way to charge yet: the invoice stays ``pending`` (as Lago does, no failure webhook)."""

    def record() -> bool:
        current = _get_invoice(deps, invoice.organization_id, invoice.lago_id)
        if current.payment_attempts == invoice.payment_attempts and current.is_payable:
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
        # Paid twice (a payment link and a charge crossed), or paid after it was voided:
        # give this payment back.
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
) -> None:
    """A charge failed: ``failed``, and ``invoice.payment_failure`` fans out to webhooks,
    dunning and the finance alert. A stale attempt's failure changes nothing."""
    error = ProviderError(
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
    error: ProviderError,
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


IN_FLIGHT_GRACE = timedelta(hours=1)
"""A manual retry waits this long for an attempt Stripe has not answered yet."""


def _attempt_in_flight(invoice: Invoice) -> bool:
    """An attempt was requested and nothing has been heard of it: a second manual retry
    would only race it. One left unanswered for an hour (its message dead-lettered) may be
    retried by hand."""
    if invoice.payment_status != "pending" or invoice.payment_block or not invoice.payment_attempts:
        return False
    return utcnow() - parse_iso(invoice.updated_at) < IN_FLIGHT_GRACE


def request_attempt(
    deps: Dependencies,
    organization_id: str,
    invoice_id: str,
    *,
    after_attempt: int | None = None,
) -> Invoice:
    """Start a new charge attempt (manual retry, dunning, a payment method arriving).

    ``after_attempt`` makes the request conditional: dunning retries only if nothing else
    started an attempt since the failure it planned for.
    """

    def record() -> Invoice:
        invoice = _get_invoice(deps, organization_id, invoice_id)
        if invoice.status != "finalized":
            raise NotAllowed("invalid_status")
        if invoice.payment_status == "succeeded" or not invoice.is_payable:
            raise NotAllowed("invalid_status")
        if after_attempt is not None and invoice.payment_attempts != after_attempt:
            return invoice
        if after_attempt is None and _attempt_in_flight(invoice):
            raise NotAllowed("payment_processor_is_currently_handling_payment")
        changes: dict[str, Any] = {
            "payment_attempts": invoice.payment_attempts + 1,
            "payment_status": "pending",
            "payment_block": None,
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
    for invoice in deps.store.invoices_awaiting_payment_method(
        customer.organization_id, customer.lago_id
    ):
        if not invoice.is_payable or invoice.payment_block not in AWAITING_PAYMENT_METHOD:
            continue
        updated = invoice.model_copy(
            update={
                "payment_attempts": invoice.payment_attempts + 1,
                "payment_block": None,
                "version": invoice.version + 1,
                "updated_at": iso(utcnow()),
            }
        )
        deps.store.stage_invoice(transaction, updated, expected_version=invoice.version)
        events.append(payment_requested(updated))
    return events


def payment_url(deps: Dependencies, organization_id: str, invoice_id: str) -> dict[str, object]:
    """A Stripe Checkout page where the customer pays a pending or failed invoice."""
    invoice = _get_invoice(deps, organization_id, invoice_id)
    if invoice.status != "finalized" or invoice.payment_status == "succeeded":
        raise ValidationFailed({"base": ["invalid_invoice_status_or_payment_status"]})
    if invoice.total_due_amount_cents <= 0:
        raise ValidationFailed({"invoice": ["nothing_due"]}, code="invalid_status")
    customer = deps.store.get_customer(organization_id, invoice.external_customer_id)
    stripe = stripe_account(deps, customer)
    if customer is None or stripe is None or not customer.stripe_customer_id:
        raise ValidationFailed(
            {"base": ["no_linked_payment_provider"]}, code="missing_payment_provider"
        )
    _, gateway = stripe
    if invoice.payment_link_session_id:
        gateway.expire_payment_link(invoice.payment_link_session_id)
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
        gateway.expire_payment_link(link.session_id)
        raise
    return {
        "lago_customer_id": invoice.lago_customer_id,
        "lago_invoice_id": invoice.lago_id,
        "external_customer_id": invoice.external_customer_id,
        "payment_provider": "stripe",
        "payment_url": link.url,
    }


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


def settle_from_stripe(
    deps: Dependencies, connection: StripeConnection, kind: str, intent: dict[str, Any]
) -> str:
    """``payment_intent.*`` events: matched to the invoice by metadata, within the org."""
    metadata = intent.get("metadata") or {}
    invoice_id = metadata.get("lago_invoice_id")
    if metadata.get("lago_organization_id") != connection.organization_id or not invoice_id:
        return "ignored"
    if kind == "payment_intent.succeeded":
        settle_success(deps, connection.organization_id, invoice_id, str(intent["id"]))
        return "processed"
    attempt = metadata.get("payment_attempt")
    if attempt is None or not str(attempt).isdigit():
        return "ignored"  # a payment link's failed try: its page stays open for another card
    last_error = intent.get("last_payment_error") or {}
    error_code = last_error.get("code") or ("canceled" if kind.endswith("canceled") else None)
    settle_failure(
        deps,
        connection.organization_id,
        invoice_id,
        int(attempt),
        PaymentOutcome(
            payment_intent_id=str(intent["id"]),
            status="failed",
            error_code=error_code,
            decline_code=last_error.get("decline_code"),
            error_message=last_error.get("message")
            or ("The payment was canceled" if kind.endswith("canceled") else None),
        ),
        connection_code=connection.code,
        # Stripe's event may be first to report a 3-D Secure failure: it needs the link too.
        gateway=deps.stripe_for(connection) if error_code == AUTHENTICATION_REQUIRED else None,
    )
    return "processed"
