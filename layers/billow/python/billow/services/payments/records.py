"""An invoice as the payment use cases read and write it."""

from __future__ import annotations

from typing import Any

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import NotFound
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice
from billow.services.stripe_connection import customer_connection


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


def charge_route(
    deps: Dependencies, customer: Customer, invoice: Invoice
) -> tuple[StripeConnection | None, str | None]:
    """The connection the customer's money goes through (``customer_connection``) and the
    Stripe id of the card to charge: the invoice's assigned method, else the customer's
    default (Billow's copy: no call to Stripe). Both are read by key, in one BatchGetItem:
    the default from the copy its ``DefaultPaymentMethodState`` keeps."""
    code = customer.billing_configuration.payment_provider_code
    if not code or not customer.stripe_customer_id:
        return customer_connection(deps, customer), _listed_method_id(deps, customer, invoice)
    store = deps.store
    organization_id = customer.organization_id
    connection_read = store.connections.ref(organization_id, code)
    chosen = _assigned_method_id(invoice)
    if chosen:
        method_read = store.payment_methods.ref(organization_id, customer.lago_id, chosen)
        connection, method = store.read(connection_read, method_read)
        return connection, method.provider_method_id if method else None
    state_read = store.payment_methods.default_state_ref(organization_id, customer.lago_id)
    connection, state = store.read(connection_read, state_read)
    if state is None or not state.holds_default:
        # Stored before the state kept the default's copy (or the methods before the state
        # existed): the list says which method is the default.
        return connection, _listed_method_id(deps, customer, invoice)
    default = state.default_method
    return connection, default.provider_method_id if default else None


def _assigned_method_id(invoice: Invoice) -> str | None:
    return invoice.payment_method.payment_method_id if invoice.payment_method else None


def _listed_method_id(deps: Dependencies, customer: Customer, invoice: Invoice) -> str | None:
    """``charge_route``'s card, found in the list of the customer's methods."""
    chosen = _assigned_method_id(invoice)
    for method in deps.store.payment_methods.list_for(customer):
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
