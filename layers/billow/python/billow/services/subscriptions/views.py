"""A subscription with what its Lago representation needs (its plan, its timezone)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.errors import NotFound
from billow.domain.stripe_sync import (
    STRIPE_REFUSED,
    SUBSCRIPTION_SYNC_OFF,
    not_synced,
    pending,
)
from billow.domain.subscriptions import Authorization, Subscription
from billow.services.lookups import get_customer, get_organization
from billow.services.subscription_billing import current_period, timezone_of


def _has_mirror(sub: Subscription) -> bool:
    """Stripe bills it, or was meant to and refused (its state says why)."""
    return sub.billed_by == "stripe" or sub.not_synced_reason == STRIPE_REFUSED


class SubscriptionView(BaseModel):
    """A subscription with what its Lago representation needs."""

    subscription: Subscription
    plan: Plan
    timezone: str
    authorization: Authorization | None = None
    stripe_sync: dict[str, object] | None = None
    """Its mirror's state, when read; else what its owner implies (just decided)."""

    def as_lago(self, now: datetime) -> dict[str, object]:
        sub = self.subscription
        body = sub.as_lago(
            self.plan.amount_cents,
            self.plan.amount_currency,
            current_period(sub, self.plan, now, self.timezone),
            self.authorization,
        )
        body["stripe_sync"] = self.stripe_sync or (
            pending()
            if sub.billed_by == "stripe"
            else not_synced(sub.not_synced_reason or SUBSCRIPTION_SYNC_OFF)
        )
        return body


def views(
    deps: Dependencies, organization_id: str, subscriptions: Sequence[Subscription]
) -> list[SubscriptionView]:
    """What each subscription's Lago representation needs; the organization, and each
    customer and plan, are read once however many subscriptions share them."""
    organization = get_organization(deps, organization_id)
    timezones: dict[str, str] = {}
    plans: dict[str, Plan] = {}
    mirrored = deps.store.stripe_sync.get_many(
        organization_id,
        "subscription",
        [sub.lago_id for sub in subscriptions if _has_mirror(sub)],
    )
    shown = []
    for sub in subscriptions:
        if sub.external_customer_id not in timezones:
            customer = get_customer(deps, organization_id, sub.external_customer_id)
            timezones[sub.external_customer_id] = timezone_of(organization, customer)
        if sub.plan_lago_id not in plans:
            plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
            if plan is None:
                raise NotFound("plan")
            plans[sub.plan_lago_id] = plan
        shown.append(
            SubscriptionView(
                subscription=sub,
                plan=plans[sub.plan_lago_id],
                timezone=timezones[sub.external_customer_id],
                stripe_sync=mirrored[sub.lago_id].as_lago() if sub.lago_id in mirrored else None,
            )
        )
    return shown


def view_of(deps: Dependencies, organization_id: str, sub: Subscription) -> SubscriptionView:
    return views(deps, organization_id, [sub])[0]
