"""POST /subscriptions: start a subscription, or change the plan of the live one."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.clock import new_id
from billow.domain.errors import ValidationFailed
from billow.domain.subscriptions import YEARLY_FACTOR, is_upgrade
from billow.services.lookups import (
    check_payment_method,
    get_customer,
    get_organization,
    get_plan,
)
from billow.services.retries import retry_on_race
from billow.services.subscription_billing import timezone_of
from billow.services.subscriptions.authorization import authorize
from billow.services.subscriptions.checkout import open_checkout, refuse_misuse
from billow.services.subscriptions.downgrade import downgrade
from billow.services.subscriptions.finding import live_subscription
from billow.services.subscriptions.requests import CreateSubscription
from billow.services.subscriptions.start import start
from billow.services.subscriptions.upgrade import upgrade
from billow.services.subscriptions.views import SubscriptionView

PlanChange = Literal["started", "upgraded", "downgraded", "unchanged"]
"""What a creation did: ``started`` a subscription for an external id with none live;
``upgraded`` the live one at once (a pending one's plan is always replaced at once);
``downgraded`` it from the end of its period; or left it ``unchanged``, already on the
plan asked for (a repeated request, or one that lost a race to an identical one)."""


class CreateResult(BaseModel):
    """The subscription as the caller shows it, and what the request did to it."""

    view: SubscriptionView
    change: PlanChange


def _yearly(plan: Plan) -> int:
    return plan.amount_cents * YEARLY_FACTOR[plan.interval]


def create(
    deps: Dependencies, organization_id: str, request: CreateSubscription, now: datetime
) -> CreateResult:
    """Start, upgrade or downgrade; a request that loses a race to a simultaneous one for
    the same external id is decided again against what that one made."""
    return retry_on_race(lambda: _create(deps, organization_id, request, now))


def _create(
    deps: Dependencies, organization_id: str, request: CreateSubscription, now: datetime
) -> CreateResult:
    body = request.subscription
    if body.plan_overrides is not None and body.plan_overrides.unsupported():
        raise ValidationFailed(
            {
                f"plan_overrides.{name}": ["not_supported"]
                for name in body.plan_overrides.unsupported()
            }
        )
    organization = get_organization(deps, organization_id)
    customer = get_customer(deps, organization_id, body.external_customer_id)
    plan = get_plan(deps, organization_id, body.plan_code)
    if customer.currency and customer.currency != plan.amount_currency:
        raise ValidationFailed({"currency": ["currencies_does_not_match"]})
    if body.ending_at and body.ending_at <= (body.subscription_at or now):
        raise ValidationFailed({"ending_at": ["invalid_date"]})
    check_payment_method(deps, customer, body.payment_method)
    timezone = timezone_of(organization, customer)
    external_id = body.external_id or new_id()
    history = deps.store.subscriptions.list_for_external_id(organization_id, external_id)
    existing = live_subscription(history)
    if existing and existing.external_customer_id != customer.external_id:
        raise ValidationFailed({"external_id": ["value_already_exist"]})
    if existing and existing.plan_code == plan.code:
        current = deps.store.plans.get_by_id(organization_id, existing.plan_lago_id) or plan
        return CreateResult(
            view=SubscriptionView(subscription=existing, plan=current, timezone=timezone),
            change="unchanged",
        )
    if body.checkout is not None:
        refuse_misuse(request, existing, now)
        sub = open_checkout(
            deps, organization, customer, plan, request, (external_id, len(history)), now
        )
        return CreateResult(
            view=SubscriptionView(subscription=sub, plan=plan, timezone=timezone),
            change="started",
        )
    authorization = (
        authorize(
            deps,
            customer,
            body.payment_method,
            request.authorization,
            f"{external_id}/{plan.code}",
        )
        if request.authorization
        else None
    )
    change: PlanChange
    if existing is None:
        sub = start(
            deps, organization, customer, plan, body, (external_id, len(history)), now, timezone
        )
        change = "started"
    else:
        old_plan = deps.store.plans.get_by_id(organization_id, existing.plan_lago_id) or plan
        if existing.status == "pending" or is_upgrade(_yearly(old_plan), _yearly(plan)):
            sub = upgrade(deps, organization, customer, existing, old_plan, plan, body, now)
            change = "upgraded"
        else:
            sub = downgrade(deps, existing, old_plan, plan, body, now, timezone)
            change = "downgraded"
    return CreateResult(
        view=SubscriptionView(
            subscription=sub, plan=plan, timezone=timezone, authorization=authorization
        ),
        change=change,
    )
