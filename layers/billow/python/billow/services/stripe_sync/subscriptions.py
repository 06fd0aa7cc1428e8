"""Subscriptions invoiced by Stripe Billing: who bills a subscription, and its mirror.

Who bills is decided once, when Billow makes the subscription, and never by both:
a Stripe-billed subscription gets no Billow invoice (``Change`` drops its fees), and a
subscription whose Stripe twin could not be made goes back to Billow, billed from its
start, so none is billed by neither either.
"""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain import stripe_sync
from billow.domain.catalog import Plan
from billow.domain.clock import parse_iso, stable_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ValidationFailed
from billow.domain.subscriptions import Subscription
from billow.services.retries import retry_on_race
from billow.services.stripe_sync_requests import billing_owner
from billow.services.subscription_billing import Change, activate, period_at, timezone_of


def assign_owner(
    deps: Dependencies,
    customer: Customer,
    plan: Plan,
    sub: Subscription,
    predecessor: Subscription | None = None,
) -> Subscription:
    """``sub`` with who bills it. An upgrade's successor billed by Stripe keeps its
    predecessor's Stripe subscription (its Price changes in place)."""
    owner, reason = billing_owner(deps, customer, plan)
    inherited = (
        predecessor.stripe_subscription_id
        if owner == "stripe" and predecessor is not None and predecessor.billed_by == "stripe"
        else None
    )
    new_in_stripe = owner == "stripe" and (predecessor is None or predecessor.billed_by != "stripe")
    if new_in_stripe and (
        deps.store.subscriptions.count_stripe_billed(customer.organization_id, customer.external_id)
        >= stripe_sync.MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER
    ):
        raise ValidationFailed({"external_customer_id": ["stripe_subscriptions_limit_reached"]})
    return sub.model_copy(
        update={
            "billed_by": owner,
            "not_synced_reason": reason,
            "stripe_subscription_id": inherited,
        }
    )


def billing_anchor(sub: Subscription, plan: Plan, timezone: str, now: datetime) -> int | None:
    """Stripe's ``billing_cycle_anchor``: calendar billing renews at the next period start
    (Stripe prorates the first, partial period); anniversary billing renews on the day
    the subscription started, Stripe's default."""
    if sub.billing_time != "calendar":
        return None
    period = period_at(sub, plan, now, timezone)
    return int(period.end.timestamp()) if period.start != now else None


def record_stripe_subscription(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str, stripe_id: str
) -> None:
    """Remember the Stripe subscription on the Billow one (re-read on a race)."""

    def save() -> None:
        current = deps.store.subscriptions.get(organization_id, external_id, lago_id)
        if current is None or current.stripe_subscription_id == stripe_id:
            return
        change = Change(deps)
        change.save(current.model_copy(update={"stripe_subscription_id": stripe_id}), current)
        change.commit_without_invoice()

    retry_on_race(save)


def hand_back_to_billow(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str, reason: str
) -> None:
    """Stripe would not take the subscription: Billow bills it, from its start, as if it
    had never been meant for Stripe (the first invoice keeps the id a start gives it)."""

    def bill() -> None:
        sub = deps.store.subscriptions.get(organization_id, external_id, lago_id)
        if sub is None or sub.billed_by != "stripe" or sub.stripe_subscription_id:
            return
        organization = deps.store.organizations.get(organization_id)
        customer = deps.store.customers.get(organization_id, sub.external_customer_id)
        plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
        if organization is None or customer is None or plan is None:
            return
        # Nothing was billed: the fees its start dropped only moved ``billed_until``.
        ours = sub.model_copy(
            update={"billed_by": "billow", "not_synced_reason": reason, "billed_until": None}
        )
        change = Change(deps)
        if sub.status != "active" or sub.started_at is None:
            change.save(ours, sub)
            change.commit_without_invoice()
            return
        timezone = timezone_of(organization, customer)
        restarted, draft = activate(ours, plan, parse_iso(sub.started_at), timezone)
        if draft is not None:
            change.drafts.append(draft)
        saved = change.save(restarted, sub)
        change.commit(
            organization,
            customer,
            stable_id("subscription-invoice", sub.lago_id, "start"),
            utcnow(),
            saved,
            plan.amount_currency,
        )

    retry_on_race(bill)


def cancel_at(sub: Subscription) -> int | None:
    return int(parse_iso(sub.ending_at).timestamp()) if sub.ending_at else None
