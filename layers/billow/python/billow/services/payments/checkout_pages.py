"""Stripe Checkout pages (payment mode) for an invoice: the pages Billow's payment links
and 3-D Secure authentications send the customer to."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id, utcnow
from billow.domain.customers import Customer
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.invoices import Invoice
from billow.ports import PaymentLink, PaymentProvider
from billow.services.payments.records import charge_metadata


def payment_link(
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
        metadata=charge_metadata(invoice, None) | {"payment_type": "one-time"},
        success_url=f"{deps.settings.public_api_url}/checkout/completed",
        idempotency_key=idempotency_key,
    )


def authentication_link(
    deps: Dependencies, invoice: Invoice, customer: Customer, gateway: PaymentProvider | None
) -> PaymentLink | None:
    """The card needs the customer present (3-D Secure): a payment link is where they can
    authenticate."""
    if gateway is None or not customer.stripe_customer_id:
        return None
    return payment_link(
        deps,
        gateway,
        invoice,
        customer.stripe_customer_id,
        f"invoice-authentication-{invoice.lago_id}-{invoice.payment_attempts}",
    )


def requires_action_event(
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
