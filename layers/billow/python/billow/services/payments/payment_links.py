"""``POST /invoices/{id}/payment_url``: a Stripe Checkout page to pay the invoice."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.clock import utcnow
from billow.domain.errors import ConcurrentUpdate, ValidationFailed
from billow.services.payments.attempts import in_flight_refusal, resolve_in_flight
from billow.services.payments.checkout_pages import payment_link
from billow.services.payments.records import get_invoice, save_invoice
from billow.services.payments.settlement import close_payment_link
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account


def _not_payable_by_link() -> ValidationFailed:
    return ValidationFailed({"base": ["invalid_invoice_status_or_payment_status"]})


def payment_url(deps: Dependencies, organization_id: str, invoice_id: str) -> dict[str, object]:
    """A Stripe Checkout page where the customer pays a pending or failed invoice.

    Refused while an attempt is in flight: the attempt may be charging the card right now,
    and a link paid meanwhile would take the money twice."""

    def create() -> dict[str, object]:
        invoice = get_invoice(deps, organization_id, invoice_id)
        if not invoice.is_payable:
            raise _not_payable_by_link()
        if invoice.payment_in_flight:
            if resolve_in_flight(deps, invoice, utcnow()) != "settled":
                raise in_flight_refusal()
            invoice = get_invoice(deps, organization_id, invoice_id)
            if not invoice.is_payable:
                raise _not_payable_by_link()
        customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
        stripe = stripe_account(deps, customer)
        if customer is None or stripe is None or not customer.stripe_customer_id:
            raise ValidationFailed(
                {"base": ["no_linked_payment_provider"]}, code="missing_payment_provider"
            )
        connection, gateway = stripe
        if invoice.payment_link_session_id and close_payment_link(
            deps, connection, gateway, invoice.payment_link_session_id
        ):
            raise _not_payable_by_link()
        link = payment_link(
            deps,
            gateway,
            invoice,
            customer.stripe_customer_id,
            f"invoice-payment-link-{invoice.lago_id}-{invoice.version}",
        )
        try:
            save_invoice(deps, invoice, {"payment_link_session_id": link.session_id}, [])
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
