"""``POST /invoices/{id}/void``."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.domain.errors import NotAllowed
from billow.domain.invoices import Invoice
from billow.services.payments.records import get_invoice, invoice_webhook, save_invoice
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account


def void(deps: Dependencies, organization_id: str, invoice_id: str) -> Invoice:
    """Void a finalized, unpaid invoice; its payment link closes so nobody can still pay it."""

    def record() -> Invoice:
        invoice = get_invoice(deps, organization_id, invoice_id)
        if invoice.stripe_invoice is not None:
            # Stripe issued it and collects it: voiding is done there, and comes back here.
            raise NotAllowed("invoice_issued_by_stripe")
        if invoice.status != "finalized" or invoice.payment_status == "succeeded":
            raise NotAllowed("not_voidable")
        updated = invoice.model_copy(update={"status": "voided", "voided_at": iso(utcnow())})
        customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
        return save_invoice(
            deps,
            invoice,
            {"status": "voided", "voided_at": updated.voided_at},
            [invoice_webhook(updated, customer, "invoice.voided")],
        )

    voided = retry_on_race(record)
    if voided.payment_link_session_id:
        customer = deps.store.customers.get(organization_id, voided.external_customer_id)
        stripe = stripe_account(deps, customer)
        if stripe is not None:
            stripe[1].expire_payment_link(voided.payment_link_session_id)
    return voided
