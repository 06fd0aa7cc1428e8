"""GET /customers/{external_customer_id}/portal_url: Stripe's Billing Portal for a customer.

Billow makes and keeps one portal configuration in each connected Stripe account, set
as seed 004 recommends so the portal never competes with Billow over subscriptions: a
customer sees their invoices and updates their billing address, phone, tax id and cards
there, but cannot cancel, switch plans or change quantities (those go through Billow,
which Stripe then follows). Stripe's portal no longer offers pausing, so it stays off.
What a customer changes there reaches Billow through Stripe's events (``customer.updated``,
``setup_intent.succeeded``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billow.composition import Dependencies
from billow.domain.errors import ProviderError, ValidationFailed, provider_rejection
from billow.domain.integrations import StripeConnection
from billow.ports import PaymentProvider
from billow.services.lookups import get_customer
from billow.services.stripe_connection import stripe_account

CONFIGURATION_VERSION = 1
"""Bumped when ``FEATURES`` change: each connected account then gets a new configuration."""
FEATURES: dict[str, Any] = {
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": True, "allowed_updates": ["address", "phone", "tax_id"]},
    "payment_method_update": {"enabled": True},
    "subscription_cancel": {"enabled": False},
    "subscription_update": {"enabled": False},
}


def portal_url(deps: Dependencies, organization_id: str, external_id: str, now: datetime) -> str:
    """A fresh portal session for the customer, returning to the connection's
    ``portal_return_url`` (else its checkout ``success_redirect_url``)."""
    customer = get_customer(deps, organization_id, external_id)
    account = stripe_account(deps, customer)
    if account is None or customer.stripe_customer_id is None:
        raise ValidationFailed({"external_customer_id": ["customer_not_in_stripe"]})
    connection, gateway = account
    return_url = connection.portal_return_url or connection.success_redirect_url
    if return_url is None:
        raise ValidationFailed({"portal_return_url": ["value_is_mandatory"]})
    try:
        configuration_id = _configuration(deps, connection, gateway)
        # One session per customer and minute: a retried request gets the same URL.
        minute = int(now.timestamp()) // 60
        return gateway.create_portal_session(
            customer.stripe_customer_id,
            configuration_id,
            return_url,
            idempotency_key=f"billow-portal-{customer.lago_id}-{minute}",
        )
    except ProviderError as error:
        if error.retryable:
            raise
        raise provider_rejection(error, "external_customer_id") from error


def _configuration(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider
) -> str:
    kept = deps.store.stripe_portal.get_configuration_id(connection, CONFIGURATION_VERSION)
    if kept is not None:
        return kept
    made = gateway.create_portal_configuration(
        FEATURES,
        metadata={"billow_organization_id": connection.organization_id},
        idempotency_key=(
            f"billow-portal-configuration-{connection.lago_id}-"
            f"{connection.webhook_endpoint_id}-v{CONFIGURATION_VERSION}"
        ),
    )
    deps.store.stripe_portal.save_configuration_id(connection, CONFIGURATION_VERSION, made)
    return made
