"""Connecting, listing and removing an organization's Stripe account."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import NotFound, ProviderError, ValidationFailed, provider_rejection
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.integrations import (
    STRIPE_WEBHOOK_EVENTS,
    StripeConnection,
    StripeSecret,
    secret_key_problem,
)
from billow.ports import PaymentProvider
from billow.topology import CATALOG_SYNC_STARTED


class ConnectStripe(BaseModel):
    """A connection request. ``create_customers`` is Lago's option to create Billow's
    customers in Stripe when they do not say otherwise (``sync_with_provider``)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    secret_key: Annotated[str, Field(min_length=1, max_length=255)]
    code: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] = (
        "stripe"
    )
    name: Annotated[str, Field(min_length=1, max_length=255)] = "Stripe"
    create_customers: bool = False
    success_redirect_url: Annotated[HttpUrl, Field(max_length=1024)] | None = None
    sync_catalog: bool = False
    """Mirror plans, add-ons and coupons in this account's Stripe Billing (seed 004)."""
    sync_subscriptions: bool = False
    """Stripe Billing invoices subscriptions to synced plans; needs ``sync_catalog``."""
    portal_return_url: Annotated[HttpUrl, Field(max_length=1024)] | None = None
    """Where Stripe's Billing Portal sends the customer back to."""
    automatic_tax: bool = False
    """Stripe Tax computes taxes (Stripe's subscriptions and checkouts, Billow's invoices)."""


def provider_error_event(connection: StripeConnection, error: ProviderError) -> OutboxEvent:
    """Lago's ``payment_provider.error``: the connection itself is broken (Stripe refuses
    its key or the key lacks a permission), so the organization must fix it."""
    return webhook_event(
        connection.organization_id,
        "payment_provider.error",
        "payment_provider_error",
        {
            "lago_payment_provider_id": connection.lago_id,
            "payment_provider_name": connection.name,
            "payment_provider_code": connection.code,
            "source": "stripe",
            "provider_error": error.as_provider_error(),
        },
    )


def _check_sync(deps: Dependencies, organization_id: str, request: ConnectStripe) -> None:
    """Subscriptions can only be invoiced by Stripe on Prices Billow mirrors; and one
    catalog is mirrored to one Stripe account."""
    if request.sync_subscriptions and not request.sync_catalog:
        raise ValidationFailed({"sync_subscriptions": ["requires_sync_catalog"]})
    if request.sync_catalog and any(
        connection.sync_catalog and connection.code != request.code
        for connection in deps.store.connections.list_all(organization_id)
    ):
        raise ValidationFailed({"sync_catalog": ["already_enabled_on_another_connection"]})


def connect(deps: Dependencies, organization_id: str, request: ConnectStripe) -> StripeConnection:
    problem = secret_key_problem(request.secret_key)
    if problem:
        raise ValidationFailed({"secret_key": [problem]})
    _check_sync(deps, organization_id, request)
    existing = deps.store.connections.get(organization_id, request.code)
    previous = deps.secrets.get(existing.secret_name, existing.secret_version) if existing else None
    now = iso(utcnow())
    lago_id = existing.lago_id if existing else new_id()
    catalog = request.sync_catalog and not (existing and existing.sync_catalog)
    subscriptions = request.sync_subscriptions and not (existing and existing.sync_subscriptions)
    if existing and previous and previous.secret_key == request.secret_key:
        endpoint_id, version = existing.webhook_endpoint_id, existing.secret_version
        if catalog or subscriptions:
            # An endpoint registered before the sync's events existed gets them now.
            _resubscribe(deps, request.secret_key, lago_id, endpoint_id)
    else:
        endpoint_id, version = _register(deps, organization_id, lago_id, request)
    connection = StripeConnection(
        lago_id=lago_id,
        organization_id=organization_id,
        code=request.code,
        name=request.name,
        create_customers=request.create_customers,
        success_redirect_url=(
            str(request.success_redirect_url) if request.success_redirect_url else None
        ),
        webhook_endpoint_id=endpoint_id,
        secret_name=deps.secrets.name_for(organization_id, request.code),
        secret_version=version,
        created_at=existing.created_at if existing else now,
        updated_at=now,
        sync_catalog=request.sync_catalog,
        sync_subscriptions=request.sync_subscriptions,
        portal_return_url=str(request.portal_return_url) if request.portal_return_url else None,
        automatic_tax=request.automatic_tax,
        livemode="_live_" in request.secret_key,
    )
    deps.store.connections.save(
        connection,
        [
            internal_event(
                organization_id,
                CATALOG_SYNC_STARTED,
                {
                    "connection_code": connection.code,
                    "catalog": catalog,
                    "subscriptions": subscriptions,
                },
            )
        ]
        if catalog or subscriptions
        else [],
        previous=existing,
    )
    # The old key usually removes its own endpoint; a rolled (revoked) key cannot, but its
    # successor reaches the same account and can.
    if (
        existing
        and previous
        and previous.secret_key != request.secret_key
        and not _forget_endpoint(deps, previous.secret_key, existing.webhook_endpoint_id)
    ):
        _forget_endpoint(deps, request.secret_key, existing.webhook_endpoint_id)
    return connection


def _register(
    deps: Dependencies, organization_id: str, lago_id: str, request: ConnectStripe
) -> tuple[str, str]:
    """Check a new key, register Billow's webhook endpoint with it and keep both secrets;
    returns the endpoint id and the secret's version."""
    gateway = deps.stripe_with_key(request.secret_key)
    fingerprint = hashlib.sha256(request.secret_key.encode()).hexdigest()[:16]
    try:
        gateway.check_credentials()
        registration = gateway.register_webhook(
            f"{deps.settings.public_api_url}/webhooks/stripe/{organization_id}?code={request.code}",
            STRIPE_WEBHOOK_EVENTS,
            idempotency_key=f"webhook-endpoint-{lago_id}-{fingerprint}",
        )
    except ProviderError as error:
        if error.retryable:
            raise
        raise provider_rejection(error, "secret_key") from error
    secret = StripeSecret(secret_key=request.secret_key, webhook_secret=registration.secret)
    version = deps.secrets.put(deps.secrets.name_for(organization_id, request.code), secret)
    return registration.endpoint_id, version


def _resubscribe(deps: Dependencies, secret_key: str, lago_id: str, endpoint_id: str) -> None:
    events = ",".join(STRIPE_WEBHOOK_EVENTS)
    digest = hashlib.sha256(events.encode()).hexdigest()[:16]
    try:
        deps.stripe_with_key(secret_key).subscribe_webhook(
            endpoint_id, STRIPE_WEBHOOK_EVENTS, idempotency_key=f"webhook-events-{lago_id}-{digest}"
        )
    except ProviderError as error:
        if error.retryable:
            raise
        raise provider_rejection(error, "secret_key") from error


def _forget_endpoint(deps: Dependencies, secret_key: str, endpoint_id: str) -> bool:
    """Best effort: remove Billow's webhook endpoint with ``secret_key``; False when Stripe
    refused that key (revoked, say), so the caller may try another."""
    try:
        deps.stripe_with_key(secret_key).delete_webhook(endpoint_id)
    except ProviderError:
        return False
    return True


def list_connections(deps: Dependencies, organization_id: str) -> list[StripeConnection]:
    return deps.store.connections.list_all(organization_id)


def disconnect(deps: Dependencies, organization_id: str, code: str) -> StripeConnection:
    connection = deps.store.connections.get(organization_id, code)
    if connection is None:
        raise NotFound("integration")
    secret = deps.secrets.get(connection.secret_name, connection.secret_version)
    _forget_endpoint(deps, secret.secret_key, connection.webhook_endpoint_id)
    deps.store.connections.delete(connection)
    deps.secrets.delete(connection.secret_name)
    return connection


def connection_for(
    deps: Dependencies, organization_id: str, code: str | None
) -> StripeConnection | None:
    """The connection a customer names by code, else the organization's first one."""
    if code:
        return deps.store.connections.get(organization_id, code)
    connections = sorted(list_connections(deps, organization_id), key=lambda c: c.created_at)
    return connections[0] if connections else None


def customer_connection(deps: Dependencies, customer: Customer | None) -> StripeConnection | None:
    """The connection a customer's money goes through, or None for a customer not in
    Stripe or an organization not connected."""
    if customer is None or not customer.stripe_customer_id:
        return None
    return connection_for(
        deps, customer.organization_id, customer.billing_configuration.payment_provider_code
    )


def stripe_account(
    deps: Dependencies, customer: Customer | None
) -> tuple[StripeConnection, PaymentProvider] | None:
    """The Stripe account a customer's money goes through (its connection, and a gateway
    for it), or None for a customer not in Stripe or an organization not connected."""
    connection = customer_connection(deps, customer)
    return (connection, deps.stripe_for(connection)) if connection else None
