"""Upgrading: moving a live subscription to a dearer plan, at once."""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain import stripe_sync
from billow.domain.catalog import Plan
from billow.domain.clock import iso, stable_id
from billow.domain.customers import Customer
from billow.domain.organizations import Organization
from billow.domain.subscriptions import Subscription
from billow.services.stripe_sync.subscriptions import assign_owner
from billow.services.subscription_billing import (
    Change,
    activate,
    subscription_webhook,
    terminate,
    timezone_of,
)
from billow.services.subscriptions.requests import SubscriptionInput
from billow.services.subscriptions.start import new_subscription


def upgrade(
    deps: Dependencies,
    organization: Organization,
    customer: Customer,
    existing: Subscription,
    old_plan: Plan,
    plan: Plan,
    body: SubscriptionInput,
    now: datetime,
) -> Subscription:
    """Applied at once: the old plan's used time and the new plan's first fee, one invoice."""
    timezone = timezone_of(organization, customer)
    change = Change(deps)
    change.stripe_limit = stripe_sync.MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER
    if existing.status == "pending":
        replaced = assign_owner(
            deps,
            customer,
            plan,
            existing.model_copy(
                update={
                    "plan_lago_id": plan.lago_id,
                    "plan_code": plan.code,
                    "updated_at": iso(now),
                }
            ),
        )
        saved = change.save(replaced, existing)
        change.commit_without_invoice()
        return saved
    ended, old_fee = terminate(existing, old_plan, now, timezone, bill=True)
    if old_fee:
        change.drafts.append(old_fee)
    change.bill_usage(existing, old_plan, now, timezone)
    saved_old = change.save(ended, existing)
    change.events.append(
        subscription_webhook(
            "subscription.terminated", saved_old, old_plan, customer, now, timezone
        )
    )
    successor = assign_owner(
        deps,
        customer,
        plan,
        new_subscription(
            organization.id, customer, plan, body, existing.external_id, now, now
        ).model_copy(
            update={
                "billing_time": existing.billing_time,
                "previous_plan_code": old_plan.code,
                "initial_started_at": existing.initial_started_at,
                "payment_method": body.payment_method or existing.payment_method,
                "name": body.name or existing.name,
            }
        ),
        predecessor=existing,
    )
    started, new_fee = activate(successor, plan, now, timezone)
    if new_fee:
        change.drafts.append(new_fee)
    saved = change.save(started, None)
    change.events.append(
        subscription_webhook("subscription.started", saved, plan, customer, now, timezone)
    )
    change.commit(
        organization,
        customer,
        stable_id("subscription-change", existing.lago_id, saved.lago_id),
        now,
        saved,
        plan.amount_currency,
    )
    return saved
