"""Starting a subscription for an external id with none live."""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain import stripe_sync
from billow.domain.catalog import Plan
from billow.domain.clock import iso, new_id, stable_id
from billow.domain.customers import Customer
from billow.domain.organizations import Organization
from billow.domain.periods import local_date
from billow.domain.subscriptions import Subscription
from billow.services.plan_charges import build_thresholds
from billow.services.stripe_sync.subscriptions import assign_owner
from billow.services.subscription_billing import (
    Change,
    activate,
    next_due,
    subscription_webhook,
)
from billow.services.subscriptions.requests import SubscriptionInput


def new_subscription(
    organization_id: str,
    customer: Customer,
    plan: Plan,
    body: SubscriptionInput,
    external_id: str,
    starts: datetime,
    now: datetime,
) -> Subscription:
    return Subscription(
        lago_id=new_id(),
        organization_id=organization_id,
        external_id=external_id,
        lago_customer_id=customer.lago_id,
        external_customer_id=customer.external_id,
        name=body.name,
        plan_lago_id=plan.lago_id,
        plan_code=plan.code,
        status="pending",
        billing_time=body.billing_time,
        subscription_at=iso(starts),
        ending_at=iso(body.ending_at) if body.ending_at else None,
        payment_method=body.payment_method,
        usage_thresholds=(
            build_thresholds(body.plan_overrides.usage_thresholds, [])
            if body.plan_overrides and body.plan_overrides.usage_thresholds is not None
            else None
        ),
        created_at=iso(now),
        updated_at=iso(now),
    )


def start(
    deps: Dependencies,
    organization: Organization,
    customer: Customer,
    plan: Plan,
    body: SubscriptionInput,
    generation: tuple[str, int],
    now: datetime,
    timezone: str,
) -> Subscription:
    """Lago's rules: a future date waits (pending); today starts now, billing a pay-in-advance
    plan at once; a past date starts then, without billing the past."""
    external_id, count = generation
    starts = body.subscription_at or now
    sub = assign_owner(
        deps,
        customer,
        plan,
        new_subscription(organization.id, customer, plan, body, external_id, starts, now),
    )
    change = Change(deps)
    change.stripe_limit = stripe_sync.MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER
    change.starts.append((organization.id, external_id, count))
    if starts > now:
        sub = change.save(sub.model_copy(update={"next_billing_at": iso(starts)}), None)
        change.commit_without_invoice()
        return sub
    started, draft = activate(sub, plan, starts, timezone)
    same_day = local_date(starts, timezone) == local_date(now, timezone)
    if draft is not None and not same_day:
        draft = None
        started = started.model_copy(update={"billed_until": None})
    started = started.model_copy(update={"next_billing_at": next_due(started, plan, now, timezone)})
    if draft is not None:
        change.drafts.append(draft)
    saved = change.save(started, None)
    change.events.append(
        subscription_webhook("subscription.started", saved, plan, customer, now, timezone)
    )
    change.commit(
        organization,
        customer,
        stable_id("subscription-invoice", saved.lago_id, "start"),
        now,
        saved,
        plan.amount_currency,
    )
    return saved
