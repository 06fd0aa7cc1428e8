"""Downgrading: moving a live subscription to a cheaper plan when its period ends."""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.clock import iso, new_id
from billow.domain.subscriptions import Subscription
from billow.services.lookups import get_customer
from billow.services.plan_charges import build_thresholds
from billow.services.stripe_sync.subscriptions import assign_owner
from billow.services.subscription_billing import Change, next_due
from billow.services.subscriptions.requests import SubscriptionInput


def downgrade(
    deps: Dependencies,
    existing: Subscription,
    old_plan: Plan,
    plan: Plan,
    body: SubscriptionInput,
    now: datetime,
    timezone: str,
) -> Subscription:
    """Applied at the end of the current period, when the billing run reaches it."""
    boundary = next_due(
        existing.model_copy(update={"ending_at": None, "trial_ended_at": None}),
        old_plan,
        now,
        timezone,
    )
    customer = get_customer(deps, existing.organization_id, existing.external_customer_id)
    successor = Subscription(
        lago_id=new_id(),
        organization_id=existing.organization_id,
        external_id=existing.external_id,
        lago_customer_id=existing.lago_customer_id,
        external_customer_id=existing.external_customer_id,
        name=body.name or existing.name,
        plan_lago_id=plan.lago_id,
        plan_code=plan.code,
        status="pending",
        billing_time=existing.billing_time,
        subscription_at=boundary,
        previous_plan_code=old_plan.code,
        payment_method=body.payment_method or existing.payment_method,
        usage_thresholds=(
            build_thresholds(body.plan_overrides.usage_thresholds, [])
            if body.plan_overrides and body.plan_overrides.usage_thresholds is not None
            else None
        ),
        created_at=iso(now),
        updated_at=iso(now),
    )
    successor = assign_owner(deps, customer, plan, successor, predecessor=existing)
    change = Change(deps)
    if existing.next_subscription_id:
        previous = deps.store.subscriptions.get(
            existing.organization_id, existing.external_id, existing.next_subscription_id
        )
        if previous is not None and previous.status == "pending":
            change.save(
                previous.model_copy(update={"status": "canceled", "canceled_at": iso(now)}),
                previous,
            )
    change.save(successor, None)
    change.save(
        existing.model_copy(
            update={
                "next_plan_code": plan.code,
                "next_subscription_id": successor.lago_id,
                "downgrade_plan_date": boundary[:10],
                "updated_at": iso(now),
            }
        ),
        existing,
    )
    change.commit_without_invoice()
    return existing.model_copy(
        update={
            "next_plan_code": plan.code,
            "next_subscription_id": successor.lago_id,
            "downgrade_plan_date": boundary[:10],
            "version": existing.version + 1,
        }
    )
