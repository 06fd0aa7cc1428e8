"""The Stripe connection of an organization."""

from __future__ import annotations

import re

from pydantic import BaseModel

# Stripe events Billow subscribes to when it registers its webhook endpoint.
STRIPE_WEBHOOK_EVENTS: tuple[str, ...] = (
    "setup_intent.succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "payment_method.detached",
    "customer.updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refund.updated",
    "charge.dispute.closed",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
)

STRIPE_API_VERSION = "2025-08-27.basil"
"""Pinned for the endpoint Billow registers, so event payloads do not change under us."""

_SECRET_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]+$")


def secret_key_problem(secret_key: str) -> str | None:
    """Why a key cannot be a Stripe secret key, as a Lago error code, or None."""
    if secret_key.startswith("pk_"):
        return "publishable_key_not_allowed"
    if not _SECRET_KEY.match(secret_key):
        return "invalid_secret_key"
    return None


class StripeConnection(BaseModel):
    lago_id: str
    organization_id: str
    code: str
    name: str
    create_customers: bool
    success_redirect_url: str | None
    webhook_endpoint_id: str
    secret_name: str
    secret_version: str
    created_at: str
    updated_at: str
    sync_catalog: bool = False
    """Mirror plans, add-ons and coupons to this account's Stripe Billing catalog."""
    sync_subscriptions: bool = False
    """Let Stripe Billing invoice subscriptions to synced plans (needs ``sync_catalog``)."""
    portal_return_url: str | None = None
    """Where Stripe's Billing Portal sends the customer back to."""
    automatic_tax: bool = False
    """Tax with Stripe Tax: Stripe's subscriptions and checkouts, and Billow's own
    invoices, instead of Billow's tax rates."""
    livemode: bool = False
    """A live key: dashboard links to its objects leave out Stripe's ``/test`` path."""
    usage_sync_refused: str | None = None
    """Why usage is no longer added to this account's Stripe invoices (Stripe finalizes
    them too soon after making them); subscriptions to plans with charges are then
    billed by Billow."""

    def as_lago(self) -> dict[str, object]:
        return {
            "lago_id": self.lago_id,
            "type": "stripe",
            "code": self.code,
            "name": self.name,
            "create_customers": self.create_customers,
            "success_redirect_url": self.success_redirect_url,
            "webhook_endpoint_id": self.webhook_endpoint_id,
            "sync_catalog": self.sync_catalog,
            "sync_subscriptions": self.sync_subscriptions,
            "portal_return_url": self.portal_return_url,
            "automatic_tax": self.automatic_tax,
            "usage_sync_refused": self.usage_sync_refused,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class StripeSecret(BaseModel):
    """What Billow keeps in Secrets Manager for one connection."""

    secret_key: str
    webhook_secret: str
