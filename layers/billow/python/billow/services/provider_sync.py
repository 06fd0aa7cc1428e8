"""Keeping a customer in step with Stripe: create, link, update, and checkout URLs; and
the billing address a customer changed in Stripe (its portal, Checkout) brought back.

A Stripe error never loses the customer: the customer is already saved when this runs.
Errors Stripe will repeat (bad input, rejected credentials) are recorded on the
customer and announced by webhooks; transient ones are raised so the queue retries
the same call with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.customers import Customer, ErrorDetail
from billow.domain.errors import ConcurrentUpdate, ProviderError
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.payments import Applied
from billow.messages import Command, ProviderSyncRequested
from billow.ports import PaymentProvider
from billow.services.payment_methods import import_stripe_default
from billow.services.stripe_connection import provider_error_event
from billow.topology import PROVIDER_SYNC_REQUESTED


def sync_inline(deps: Dependencies, customer: Customer, action: str) -> Customer:
    """Run provider work inside the request (``sync: true``). A transient Stripe failure
    is handed to the queue instead of failing a request whose customer is already saved."""
    try:
        synced = sync_customer(deps, customer.organization_id, customer.external_id, action)
        return synced or customer
    except ProviderError:
        transaction = Transaction()
        transaction.publish([sync_request(customer, action)])
        deps.store.commit(transaction)
        return customer


def sync_request(customer: Customer, action: str) -> OutboxEvent:
    """The queued form of provider work, published with the customer write that needs it."""
    return internal_event(
        customer.organization_id,
        PROVIDER_SYNC_REQUESTED,
        {"external_customer_id": customer.external_id, "action": action},
    )


def sync_customer(
    deps: Dependencies, organization_id: str, external_id: str, action: str
) -> Customer | None:
    """Do ``action`` (create, link or update) in Stripe; returns the customer as now stored
    (None when it was deleted meanwhile)."""
    customer = deps.store.customers.get(organization_id, external_id)
    if customer is None or not customer.uses_stripe:
        return customer
    connection = deps.store.connections.get(
        organization_id, customer.billing_configuration.payment_provider_code or ""
    )
    if connection is None:
        return customer
    gateway = deps.stripe_for(connection)
    try:
        if action == "create":
            return _create(deps, connection, gateway, customer)
        if action == "link":
            return _link(deps, connection, gateway, customer)
        if customer.stripe_customer_id:
            _push_profile(gateway, customer)
        return customer
    except ProviderError as error:
        if error.retryable:
            raise
        return _record_failure(deps, connection, customer, error)


def _create(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, customer: Customer
) -> Customer:
    if customer.stripe_customer_id:
        # An earlier request created it; this one may carry details edited meanwhile.
        _push_profile(gateway, customer)
        return customer
    stripe_id = _create_in_stripe(gateway, customer)
    url = create_checkout(deps, connection, customer, request_key=stripe_id, stripe_id=stripe_id)
    linked = _update_customer(
        deps,
        customer,
        _linker(connection, stripe_id, checkout_url_event(customer, connection, url)),
    )
    if linked.stripe_profile() != customer.stripe_profile():
        _push_profile(gateway, linked)  # edited while Stripe was creating it
    return linked


def link_in_stripe(
    deps: Dependencies, connection: StripeConnection, customer: Customer
) -> Customer:
    """The customer in the connection's Stripe account now, made there if it has no
    Stripe customer yet (a subscription checkout needs one before its page opens). The
    idempotency key is the queued sync's, so the two never make two Stripe customers."""
    if customer.stripe_customer_id:
        return customer
    stripe_id = _create_in_stripe(deps.stripe_for(connection), customer)
    return _update_customer(deps, customer, _linker(connection, stripe_id))


def _create_in_stripe(gateway: PaymentProvider, customer: Customer) -> str:
    return gateway.create_customer(
        customer.stripe_profile(),
        metadata={"lago_customer_id": customer.lago_id, "customer_id": customer.external_id},
        idempotency_key=f"customer-create-{customer.lago_id}",
    )


def _linker(
    connection: StripeConnection, stripe_id: str, *announcements: OutboxEvent
) -> CustomerChange:
    """The customer linked to ``stripe_id`` in the connection's account, announced."""

    def link(current: Customer) -> tuple[Customer, list[OutboxEvent]]:
        if current.billing_configuration.provider_customer_id == stripe_id:
            return current, []  # a concurrent attempt linked (and announced) it already
        billing = current.billing_configuration.model_copy(
            update={
                "payment_provider": "stripe",
                "payment_provider_code": connection.code,
                "provider_customer_id": stripe_id,
            }
        )
        linked = current.model_copy(update={"billing_configuration": billing, "error_details": []})
        created = webhook_event(
            current.organization_id,
            "customer.payment_provider_created",
            "customer",
            linked.as_webhook_object(),
        )
        return linked, [created, *announcements]

    return link


_STRIPE_ADDRESS = {
    "address_line1": "line1",
    "address_line2": "line2",
    "city": "city",
    "zipcode": "postal_code",
    "state": "state",
    "country": "country",
}
"""Billow's address fields and Stripe's names for them."""


def adopt_stripe_address(
    deps: Dependencies, gateway: PaymentProvider, customer: Customer, created: int
) -> Applied:
    """A ``customer.updated`` stamped ``created`` that changed the address in Stripe (the
    billing portal, Checkout, the dashboard). The event may be a snapshot overtaken by
    later changes, so Stripe's current address is read and taken, announced by
    ``customer.updated``. Billow's own push comes back as the address Billow holds (no
    change), and a customer edited in Billow after the event keeps Billow's edit (its
    push to Stripe is on its way)."""
    if datetime.fromisoformat(customer.updated_at) > datetime.fromtimestamp(created, UTC):
        return "ignored"
    assert customer.stripe_customer_id
    address = gateway.retrieve_customer(customer.stripe_customer_id).address or {}
    fields = {ours: address.get(theirs) or None for ours, theirs in _STRIPE_ADDRESS.items()}

    def take(current: Customer) -> tuple[Customer, list[OutboxEvent]]:
        if all(getattr(current, name) == value for name, value in fields.items()):
            return current, []
        moved = current.model_copy(update={**fields, "updated_at": iso(utcnow())})
        return moved, [
            webhook_event(
                current.organization_id, "customer.updated", "customer", moved.as_webhook_object()
            )
        ]

    _update_customer(deps, customer, take)
    return "processed"


def _push_profile(gateway: PaymentProvider, customer: Customer) -> None:
    assert customer.stripe_customer_id
    gateway.update_customer(
        customer.stripe_customer_id,
        customer.stripe_profile(),
        idempotency_key=f"customer-update-{customer.lago_id}-{customer.version}",
    )


def _link(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, customer: Customer
) -> Customer:
    """An existing Stripe customer: nothing is created; its default card is brought over."""
    import_stripe_default(deps, connection, gateway, customer)
    return customer


def _record_failure(
    deps: Dependencies, connection: StripeConnection, customer: Customer, error: ProviderError
) -> Customer:
    def note(current: Customer) -> tuple[Customer, list[OutboxEvent]]:
        detail = ErrorDetail(
            lago_id=new_id(),
            error_code="payment_provider_error",
            details={"provider": "stripe", **error.as_provider_error()},
        )
        events = [
            webhook_event(
                current.organization_id,
                "customer.payment_provider_error",
                "payment_provider_customer_error",
                {
                    "lago_customer_id": current.lago_id,
                    "external_customer_id": current.external_id,
                    "payment_provider": "stripe",
                    "payment_provider_code": connection.code,
                    "provider_error": error.as_provider_error(),
                },
            )
        ]
        if error.rejects_credentials:
            events.append(provider_error_event(connection, error))
        return current.model_copy(update={"error_details": [detail]}), events

    return _update_customer(deps, customer, note)


CustomerChange = Callable[[Customer], tuple[Customer, list[OutboxEvent]]]


def _update_customer(deps: Dependencies, customer: Customer, change: CustomerChange) -> Customer:
    """Apply ``change`` (customer → customer, events) with optimistic locking; re-read on a race."""
    current: Customer | None = customer
    for _ in range(5):
        assert current is not None
        changed, events = change(current)
        if changed == current and not events:
            return current
        changed = changed.model_copy(update={"version": current.version + 1})
        transaction = Transaction()
        deps.store.customers.stage(transaction, changed, current)
        transaction.publish(events)
        try:
            deps.store.commit(transaction)
            return changed
        except ConcurrentUpdate:
            current = deps.store.customers.get(customer.organization_id, customer.external_id)
            if current is None:
                return customer
    raise ConcurrentUpdate(f"customer {customer.external_id} kept changing")


def create_checkout(
    deps: Dependencies,
    connection: StripeConnection,
    customer: Customer,
    request_key: str,
    stripe_id: str | None = None,
) -> str:
    """A Stripe Checkout Session in setup mode: the customer saves a card, nothing is charged."""
    customer_id = stripe_id or customer.stripe_customer_id
    assert customer_id
    success_url = (
        connection.success_redirect_url or f"{deps.settings.public_api_url}/checkout/completed"
    )
    return deps.stripe_for(connection).create_setup_checkout(
        customer_id,
        success_url=success_url,
        payment_method_types=customer.billing_configuration.provider_payment_methods or ["card"],
        metadata={
            "lago_customer_id": customer.lago_id,
            "lago_organization_id": customer.organization_id,
        },
        idempotency_key=f"checkout-setup-{customer.lago_id}-{request_key}",
    )


def checkout_url_event(customer: Customer, connection: StripeConnection, url: str) -> OutboxEvent:
    return webhook_event(
        customer.organization_id,
        "customer.checkout_url_generated",
        "payment_provider_customer_checkout_url",
        {
            "lago_customer_id": customer.lago_id,
            "external_customer_id": customer.external_id,
            "payment_provider": "stripe",
            "payment_provider_code": connection.code,
            "checkout_url": url,
        },
    )


def sync_once(
    deps: Dependencies,
    request: Command[ProviderSyncRequested],
    lambda_context: LambdaContext,
) -> None:
    """Run one queued sync request at most once.

    The queue delivers at least once; the idempotency record makes a duplicated request a
    no-op instead of a second round of Stripe calls. A failed attempt leaves no record,
    so the queue's retries run it again.
    """
    config = IdempotencyConfig(event_key_jmespath="event_id", expires_after_seconds=24 * 3600)
    config.register_lambda_context(lambda_context)

    @idempotent_function(
        data_keyword_argument="request",
        persistence_store=deps.idempotency("provider_sync"),
        config=config,
    )
    def run(request: dict[str, Any]) -> str:
        payload = request["payload"]
        sync_customer(
            deps, request["organization_id"], payload["external_customer_id"], payload["action"]
        )
        return "done"

    run(request=request.model_dump(mode="json"))
