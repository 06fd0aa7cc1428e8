"""An invoice as the payment use cases read and write it."""

from __future__ import annotations

from typing import Any

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import NotFound
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.invoices import Invoice


def charge_metadata(invoice: Invoice, attempt: int | None) -> dict[str, str]:
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


def get_invoice(deps: Dependencies, organization_id: str, invoice_id: str) -> Invoice:
    invoice = deps.store.invoices.get(organization_id, invoice_id)
    if invoice is None:
        raise NotFound("invoice")
    return invoice


def save_invoice(
    deps: Dependencies, invoice: Invoice, changes: dict[str, Any], events: list[OutboxEvent]
) -> Invoice:
    updated = invoice.model_copy(
        update={**changes, "version": invoice.version + 1, "updated_at": iso(utcnow())}
    )
    transaction = Transaction()
    deps.store.invoices.stage(transaction, updated, before=invoice)
    transaction.publish(events)
    deps.store.commit(transaction)
    return updated


def payment_method_id(deps: Dependencies, customer: Customer, invoice: Invoice) -> str | None:
    """The invoice's assigned method, else the customer's default (Billow's copy: no call)."""
    methods = deps.store.payment_methods.list_for(customer)
    chosen = invoice.payment_method.payment_method_id if invoice.payment_method else None
    for method in methods:
        if (chosen and method.lago_id == chosen) or (not chosen and method.is_default):
            return method.provider_method_id
    return None


def invoice_webhook(invoice: Invoice, customer: Customer | None, webhook_type: str) -> OutboxEvent:
    return webhook_event(
        invoice.organization_id,
        webhook_type,
        "invoice",
        invoice.as_lago(customer.as_lago() if customer else None),
    )


def payment_failure_event(
    invoice: Invoice,
    customer: Customer | None,
    connection_code: str,
    provider_error: dict[str, object],
    error_details: dict[str, object],
) -> OutboxEvent:
    """Lago's ``invoice.payment_failure``: to webhook endpoints, dunning and finance."""
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
            "provider_error": provider_error,
            "error_details": error_details,
        },
    )
