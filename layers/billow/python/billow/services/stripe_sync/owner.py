"""Who invoices a subscription: Billow, or Stripe Billing (seed 004's rules)."""

from __future__ import annotations

from typing import Literal

from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.customers import Customer
from billow.domain.stripe_sync import (
    CUSTOMER_NOT_IN_STRIPE,
    FREE_PLAN,
    IN_TRIAL,
    SUBSCRIPTION_SYNC_OFF,
)
from billow.services.stripe_sync.requests import catalog_connection

Owner = tuple[Literal["billow", "stripe"], str | None]


def billing_owner(
    deps: Dependencies, customer: Customer, plan: Plan, trial_over: bool = False
) -> Owner:
    """Seed 004's rules: Stripe bills a subscription to a synced plan, unless the plan is
    free, the subscription is in its trial (Billow hands it over when the trial ends,
    ``trial_over``), or the customer is not in Stripe."""
    connection = catalog_connection(deps, customer.organization_id)
    if connection is None or not connection.sync_subscriptions:
        return "billow", SUBSCRIPTION_SYNC_OFF
    if plan.amount_cents == 0:
        return "billow", FREE_PLAN
    if plan.trial_period > 0 and not trial_over:
        return "billow", IN_TRIAL
    if not customer.stripe_customer_id:
        return "billow", CUSTOMER_NOT_IN_STRIPE
    return "stripe", None
