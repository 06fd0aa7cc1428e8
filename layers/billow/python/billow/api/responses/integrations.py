"""Billow's Stripe connection and Lago's webhook endpoints as served."""

from __future__ import annotations

from typing import Literal

from billow.api.responses.common import LagoObject, PaginationMeta, Timestamp


class StripeIntegrationObject(LagoObject):
    """A Stripe account connected to the organization (the secret key is never shown)."""

    lago_id: str
    type: Literal["stripe"]
    code: str
    name: str
    create_customers: bool
    success_redirect_url: str | None
    webhook_endpoint_id: str
    """The endpoint Billow registered in that Stripe account for its events."""
    sync_catalog: bool
    """Plans, add-ons and coupons are mirrored in this account's Stripe Billing."""
    sync_subscriptions: bool
    """Subscriptions to synced plans are invoiced by Stripe Billing."""
    portal_return_url: str | None
    """Where Stripe's Billing Portal sends a customer back to."""
    automatic_tax: bool
    usage_sync_refused: str | None
    """Why usage is no longer added to Stripe's invoices
    (``finalization_grace_period_too_short``)."""
    """Stripe Tax computes the taxes of Stripe's subscriptions and of Billow's invoices."""
    created_at: Timestamp
    updated_at: Timestamp


class WebhookEndpointObject(LagoObject):
    lago_id: str
    lago_organization_id: str
    webhook_url: str
    signature_algo: Literal["hmac"]
    name: str | None
    event_types: list[str] | None
    """The webhook types it receives; null for every type."""
    created_at: Timestamp


class StripeIntegrationResponse(LagoObject):
    integration: StripeIntegrationObject


class StripeResync(LagoObject):
    requested_count: int
    """Catalog objects whose failed sync was asked for again."""


class StripeResyncResponse(LagoObject):
    resync: StripeResync


class StripeIntegrationList(LagoObject):
    integrations: list[StripeIntegrationObject]


class WebhookEndpointResponse(LagoObject):
    webhook_endpoint: WebhookEndpointObject


class WebhookEndpointsPage(LagoObject):
    webhook_endpoints: list[WebhookEndpointObject]
    meta: PaginationMeta
