"""Charging an invoice: one PaymentIntent per attempt (the payments queue's consumer)."""

from __future__ import annotations

import contextlib
from typing import Literal, get_args

from billow.composition import Dependencies
from billow.domain.customers import Customer
from billow.domain.errors import ConcurrentUpdate, ProviderError, ValidationFailed
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice, PaymentBlock
from billow.messages import ChargeRequested
from billow.ports import PaymentOutcome, PaymentProvider
from billow.services.payments.attempts import request_attempt
from billow.services.payments.records import (
    charge_metadata,
    charge_route,
    get_invoice,
    save_invoice,
)
from billow.services.payments.settlement import (
    close_payment_link,
    settle_failure,
    settle_success,
)
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import provider_error_event

UnderWay = Literal["processing", "requires_action", "requires_confirmation", "requires_capture"]
"""Stripe's statuses for a PaymentIntent neither paid nor failed yet: its event settles it."""
NotCharging = Literal["stale", "paid_by_link"]
"""Why the attempt no longer charges: its outcome is known already, or the invoice moved
on (``stale``); the customer paid through the invoice's payment link (``paid_by_link``)."""
ChargeOutcome = (
    Literal[
        "not_charged",
        "no_payment_provider",
        "no_payment_method",
        "refused",
        "succeeded",
        "failed",
    ]
    | NotCharging
    | UnderWay
)
"""What a charge attempt came to, for the logs and metrics: not charged by Billow
(``not_charged``: the invoice is paid another way), blocked until the customer has a
Stripe account or a card, refused by Stripe in a way it will repeat, paid, failed, or
under way in Stripe."""


def charge(deps: Dependencies, organization_id: str, requested: ChargeRequested) -> ChargeOutcome:
    """Make the charge attempt a message asks for; returns what happened, for the logs.

    The usual charge makes three DynamoDB requests: the invoice with its customer, the
    connection with the card to charge (``charge_route``), and the transaction settling it."""
    attempt = requested.attempt
    invoice, customer, route = _read_for_charge(deps, organization_id, requested)
    if invoice is None or not invoice.is_payable or invoice.payment_attempts != attempt:
        return "stale"
    if invoice.payment_block in {"manual", "skip_psp"}:
        return "not_charged"
    if not invoice.payment_in_flight:
        return "stale"  # this attempt's outcome is already known: a redelivered message
    if customer is None or not customer.stripe_customer_id:
        _block(deps, invoice, "no_payment_provider")
        return "no_payment_provider"
    connection, method_id = route or charge_route(deps, customer, invoice)
    if connection is None:
        _block(deps, invoice, "no_payment_provider")
        return "no_payment_provider"
    if method_id is None:
        _block(deps, invoice, "no_payment_method")
        return "no_payment_method"
    gateway = deps.stripe_for(connection)
    invoice_id = invoice.lago_id
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
            metadata=charge_metadata(invoice, attempt),
            manual_capture=False,
            idempotency_key=f"invoice-payment-{invoice.lago_id}-{attempt}",
        )
    except ProviderError as refused:
        if refused.retryable:
            raise  # Stripe is unavailable: the queue delivers the message again
        _fail_on_refusal(deps, connection, invoice, attempt, refused)
        return "refused"
    if outcome.status == "succeeded":
        settle_success(
            deps,
            organization_id,
            invoice_id,
            outcome.payment_intent_id or "",
            held=(invoice, customer),
        )
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
    return _under_way(outcome.status)


Route = tuple[StripeConnection | None, str | None]


def _read_for_charge(
    deps: Dependencies, organization_id: str, requested: ChargeRequested
) -> tuple[Invoice | None, Customer | None, Route | None]:
    """The invoice, its customer and, when the message names them all, the charge's route
    (``charge_route``): the connection and the customer's default card, read with them in
    one BatchGetItem. The route stands only if what was read is what the message named and
    the invoice charges the default card; otherwise it is None and read again."""
    lago_customer_id, code = requested.lago_customer_id, requested.connection_code
    named = requested.external_customer_id
    if not (named and lago_customer_id and code):
        return (*_invoice_and_customer(deps, organization_id, requested), None)
    store = deps.store
    invoice, customer, connection, state = store.read(
        store.invoices.ref(organization_id, requested.invoice_id),
        store.customers.ref(organization_id, named),
        store.connections.ref(organization_id, code),
        store.payment_methods.default_state_ref(organization_id, lago_customer_id),
    )
    if invoice is None or invoice.external_customer_id != named:
        return (*_invoice_and_customer(deps, organization_id, requested), None)
    as_named = (
        customer is not None
        and customer.lago_id == lago_customer_id
        and customer.stripe_customer_id is not None
        and customer.billing_configuration.payment_provider_code == code
    )
    if not as_named or invoice.payment_method or state is None or not state.holds_default:
        return invoice, customer, None
    default = state.default_method
    return invoice, customer, (connection, default.provider_method_id if default else None)


def _invoice_and_customer(
    deps: Dependencies, organization_id: str, requested: ChargeRequested
) -> tuple[Invoice | None, Customer | None]:
    """The invoice and its customer. A message that names the customer gets both in one
    request, the customer kept only if it is the invoice's; an older message names none,
    so the invoice is read first."""
    store = deps.store
    invoice_read = store.invoices.ref(organization_id, requested.invoice_id)
    named = requested.external_customer_id
    if named is not None:
        invoice, customer = store.read(invoice_read, store.customers.ref(organization_id, named))
        if invoice is None or invoice.external_customer_id == named:
            return invoice, customer
    else:
        invoice = store.get(invoice_read)
        if invoice is None:
            return None, None
    return invoice, store.customers.get(organization_id, invoice.external_customer_id)


def _under_way(status: str) -> UnderWay:
    """Stripe's own name for a PaymentIntent still under way. Those four are every status
    left once paid and failed are set apart; any other Stripe may add is under way too."""
    for known in get_args(UnderWay):
        if status == known:
            return known
    return "processing"


def _close_link_before_charging(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, invoice: Invoice
) -> NotCharging | None:
    """Close the invoice's payment link in Stripe before charging: from then on the charge
    is the only way to pay. Returns why not to charge (the customer paid through the link
    first, or the invoice moved on), or None to go ahead."""
    current = invoice
    while current.payment_link_session_id:
        if close_payment_link(deps, connection, gateway, current.payment_link_session_id):
            return "paid_by_link"
        try:
            current = save_invoice(deps, current, {"payment_link_session_id": None}, [])
        except ConcurrentUpdate:
            fresh = deps.store.invoices.get(invoice.organization_id, invoice.lago_id)
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
    invoice = get_invoice(deps, organization_id, invoice_id)
    if invoice.payment_attempts == attempt and invoice.payment_in_flight:
        save_invoice(deps, invoice, {"provider_payment_id": outcome.payment_intent_id}, [])


def _block(deps: Dependencies, invoice: Invoice, reason: PaymentBlock) -> None:
    """No way to charge yet: the invoice stays ``pending`` (as Lago does, no failure webhook)."""

    def record() -> bool:
        current = get_invoice(deps, invoice.organization_id, invoice.lago_id)
        if current.payment_attempts == invoice.payment_attempts and current.payment_in_flight:
            save_invoice(deps, current, {"payment_block": reason}, [])
            return True
        return False

    if not retry_on_race(record) or reason != "no_payment_method":
        return
    # A card saved between our look and this write found no invoice waiting for it: look
    # once more now that the wait is recorded (a card saved later finds the invoice).
    customer = deps.store.customers.get(invoice.organization_id, invoice.external_customer_id)
    if customer is not None and charge_route(deps, customer, invoice)[1] is not None:
        with contextlib.suppress(ValidationFailed):  # paid or voided meanwhile
            request_attempt(
                deps,
                invoice.organization_id,
                invoice.lago_id,
                after_attempt=invoice.payment_attempts,
            )
