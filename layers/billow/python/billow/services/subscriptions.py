"""Subscription use cases behind /api/v1/subscriptions: create (with pre-authorization),
upgrade, downgrade, update, terminate, read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.clock import IsoDateTime, iso, new_id, stable_id
from billow.domain.customers import Customer
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import Identifier
from billow.domain.money import Currency, HoldableCents
from billow.domain.organizations import Organization
from billow.domain.periods import local_date
from billow.domain.subscriptions import (
    YEARLY_FACTOR,
    Authorization,
    PaymentMethodChoice,
    Subscription,
    is_upgrade,
)
from billow.services.billing_run import DueSubscription, work
from billow.services.lookups import check_payment_method, get_customer
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account
from billow.services.subscription_billing import (
    Change,
    activate,
    current_period,
    next_due,
    subscription_webhook,
    terminate,
    timezone_of,
)


class AuthorizationInput(BaseModel):
    """What to hold on the card before subscribing: an amount Stripe can charge, in a
    currency Billow knows, or nothing is asked of Stripe at all."""

    model_config = ConfigDict(extra="forbid")

    amount_cents: HoldableCents
    amount_currency: Currency


class SubscriptionInput(BaseModel):
    """Lago's subscription input. Fields Billow does not support yet are refused, not ignored."""

    model_config = ConfigDict(extra="ignore")

    external_customer_id: str = Field(min_length=1, max_length=255)
    plan_code: str = Field(min_length=1, max_length=255)
    external_id: Identifier | None = None
    name: str | None = Field(default=None, max_length=255)
    billing_time: Literal["calendar", "anniversary"] = "calendar"
    subscription_at: IsoDateTime | None = None
    ending_at: IsoDateTime | None = None
    payment_method: PaymentMethodChoice | None = None
    plan_overrides: dict[str, object] | None = None


class CreateSubscription(BaseModel):
    subscription: SubscriptionInput
    authorization: AuthorizationInput | None = None


class SubscriptionUpdateInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    ending_at: IsoDateTime | None = None
    subscription_at: IsoDateTime | None = None
    payment_method: PaymentMethodChoice | None = None


class SubscriptionView(BaseModel):
    """A subscription with what its Lago representation needs."""

    subscription: Subscription
    plan: Plan
    timezone: str
    authorization: Authorization | None = None

    def as_lago(self, now: datetime) -> dict[str, object]:
        return self.subscription.as_lago(
            self.plan.amount_cents,
            self.plan.amount_currency,
            current_period(self.subscription, self.plan, now, self.timezone),
            self.authorization,
        )


def _organization(deps: Dependencies, organization_id: str) -> Organization:
    organization = deps.store.get_organization(organization_id)
    if organization is None:
        raise NotFound("organization")
    return organization


def _plan(deps: Dependencies, organization_id: str, code: str) -> Plan:
    plan = deps.store.get_plan(organization_id, code)
    if plan is None:
        raise NotFound("plan")
    return plan


def authorize(
    deps: Dependencies,
    customer: Customer,
    choice: PaymentMethodChoice | None,
    request: AuthorizationInput,
    purpose: str,
) -> Authorization:
    """Hold the amount on the card, then release it at once. Any refusal aborts the caller
    before it writes anything (a 422 with Stripe's reason)."""
    account = stripe_account(deps, customer)
    if account is None or not customer.stripe_customer_id:
        raise ValidationFailed(
            {"authorization": ["customer_not_linked_to_stripe"]}, code="invalid_payment_provider"
        )
    _, gateway = account
    methods = deps.store.list_payment_methods(customer)
    chosen = choice.payment_method_id if choice else None
    method = next((m for m in methods if (m.lago_id == chosen if chosen else m.is_default)), None)
    if method is None:
        raise ValidationFailed(
            {"authorization": ["customer_has_no_payment_method"]},
            code="customer_has_no_payment_method",
        )
    key = stable_id(
        "authorization",
        customer.organization_id,
        purpose,
        method.provider_method_id,
        str(request.amount_cents),
        request.amount_currency,
    )
    outcome = gateway.create_payment_intent(
        customer_id=customer.stripe_customer_id,
        payment_method_id=method.provider_method_id,
        amount=request.amount_cents,
        currency=request.amount_currency,
        description="Payment pre-authorization",
        metadata={
            "lago_organization_id": customer.organization_id,
            "lago_customer_id": customer.lago_id,
            "billow_purpose": "authorization",
        },
        manual_capture=True,
        idempotency_key=f"authorization-{key}",
    )
    if outcome.status == "requires_capture" and outcome.payment_intent_id:
        gateway.cancel_payment_intent(
            outcome.payment_intent_id, idempotency_key=f"authorization-release-{key}"
        )
        return Authorization(
            id=outcome.payment_intent_id,
            amount=outcome.amount,
            amount_capturable=outcome.amount_capturable,
            currency=request.amount_currency,
            status=outcome.status,
        )
    if outcome.payment_intent_id and not outcome.failed:
        gateway.cancel_payment_intent(
            outcome.payment_intent_id, idempotency_key=f"authorization-release-{key}"
        )
    raise ValidationFailed(
        {
            "authorization": [outcome.error_code or outcome.status],
            "provider_error": {
                "message": outcome.error_message or f"authorization {outcome.status}",
                "error_code": outcome.error_code,
                "decline_code": outcome.decline_code,
            },
        },
        code=outcome.error_code or "authorization_failed",
    )


def _live(subscriptions: list[Subscription]) -> Subscription | None:
    for status in ("active", "pending"):
        for sub in reversed(subscriptions):
            if sub.status == status:
                return sub
    return None


def _yearly(plan: Plan) -> int:
    return plan.amount_cents * YEARLY_FACTOR[plan.interval]


def create(
    deps: Dependencies, organization_id: str, request: CreateSubscription, now: datetime
) -> SubscriptionView:
    """Start, upgrade or downgrade; a request that loses a race to a simultaneous one for
    the same external id is decided again against what that one made."""
    return retry_on_race(lambda: _create(deps, organization_id, request, now))


def _create(
    deps: Dependencies, organization_id: str, request: CreateSubscription, now: datetime
) -> SubscriptionView:
    body = request.subscription
    if body.plan_overrides:
        raise ValidationFailed({"plan_overrides": ["not_supported"]})
    organization = _organization(deps, organization_id)
    customer = get_customer(deps, organization_id, body.external_customer_id)
    plan = _plan(deps, organization_id, body.plan_code)
    if customer.currency and customer.currency != plan.amount_currency:
        raise ValidationFailed({"currency": ["currencies_does_not_match"]})
    if body.ending_at and body.ending_at <= (body.subscription_at or now):
        raise ValidationFailed({"ending_at": ["invalid_date"]})
    check_payment_method(deps, customer, body.payment_method)
    timezone = timezone_of(organization, customer)
    external_id = body.external_id or new_id()
    history = deps.store.subscriptions_for(organization_id, external_id)
    existing = _live(history)
    if existing and existing.external_customer_id != customer.external_id:
        raise ValidationFailed({"external_id": ["value_already_exist"]})
    if existing and existing.plan_code == plan.code:
        current = deps.store.get_plan_by_id(organization_id, existing.plan_lago_id) or plan
        return SubscriptionView(subscription=existing, plan=current, timezone=timezone)
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
    if existing is None:
        sub = _start(
            deps, organization, customer, plan, body, (external_id, len(history)), now, timezone
        )
    else:
        old_plan = deps.store.get_plan_by_id(organization_id, existing.plan_lago_id) or plan
        if existing.status == "pending" or is_upgrade(_yearly(old_plan), _yearly(plan)):
            sub = _upgrade(deps, organization, customer, existing, old_plan, plan, body, now)
        else:
            sub = _downgrade(deps, existing, old_plan, plan, body, now, timezone)
    return SubscriptionView(
        subscription=sub, plan=plan, timezone=timezone, authorization=authorization
    )


def _new_subscription(
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
        created_at=iso(now),
        updated_at=iso(now),
    )


def _start(
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
    sub = _new_subscription(organization.id, customer, plan, body, external_id, starts, now)
    change = Change(deps)
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


def _upgrade(
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
    if existing.status == "pending":
        replaced = existing.model_copy(
            update={"plan_lago_id": plan.lago_id, "plan_code": plan.code, "updated_at": iso(now)}
        )
        saved = change.save(replaced, existing)
        change.commit_without_invoice()
        return saved
    ended, old_fee = terminate(existing, old_plan, now, timezone, bill=True)
    if old_fee:
        change.drafts.append(old_fee)
    saved_old = change.save(ended, existing)
    change.events.append(
        subscription_webhook(
            "subscription.terminated", saved_old, old_plan, customer, now, timezone
        )
    )
    successor = _new_subscription(
        organization.id, customer, plan, body, existing.external_id, now, now
    ).model_copy(
        update={
            "billing_time": existing.billing_time,
            "previous_plan_code": old_plan.code,
            "initial_started_at": existing.initial_started_at,
            "payment_method": body.payment_method or existing.payment_method,
            "name": body.name or existing.name,
        }
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


def _downgrade(
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
        created_at=iso(now),
        updated_at=iso(now),
    )
    change = Change(deps)
    if existing.next_subscription_id:
        previous = deps.store.get_subscription(
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


def views(
    deps: Dependencies, organization_id: str, subscriptions: Sequence[Subscription]
) -> list[SubscriptionView]:
    """What each subscription's Lago representation needs; the organization, and each
    customer and plan, are read once however many subscriptions share them."""
    organization = _organization(deps, organization_id)
    timezones: dict[str, str] = {}
    plans: dict[str, Plan] = {}
    shown = []
    for sub in subscriptions:
        if sub.external_customer_id not in timezones:
            customer = get_customer(deps, organization_id, sub.external_customer_id)
            timezones[sub.external_customer_id] = timezone_of(organization, customer)
        if sub.plan_lago_id not in plans:
            plan = deps.store.get_plan_by_id(organization_id, sub.plan_lago_id)
            if plan is None:
                raise NotFound("plan")
            plans[sub.plan_lago_id] = plan
        shown.append(
            SubscriptionView(
                subscription=sub,
                plan=plans[sub.plan_lago_id],
                timezone=timezones[sub.external_customer_id],
            )
        )
    return shown


def _view(deps: Dependencies, organization_id: str, sub: Subscription) -> SubscriptionView:
    return views(deps, organization_id, [sub])[0]


def find(
    deps: Dependencies, organization_id: str, external_id: str, status: str | None = None
) -> Subscription:
    """The subscription an external id names: the live one, else the latest (Lago's GET)."""
    subscriptions = deps.store.subscriptions_for(organization_id, external_id)
    if status:
        matching = [s for s in subscriptions if s.status == status]
        if not matching:
            raise NotFound("subscription")
        return matching[-1]
    found = _live(subscriptions) or (subscriptions[-1] if subscriptions else None)
    if found is None:
        raise NotFound("subscription")
    return found


def get(deps: Dependencies, organization_id: str, external_id: str) -> SubscriptionView:
    return _view(deps, organization_id, find(deps, organization_id, external_id))


def list_subscriptions(
    deps: Dependencies,
    organization_id: str,
    *,
    external_customer_id: str | None,
    plan_code: str | None,
    statuses: list[str],
) -> list[Subscription]:
    """Newest first; the caller builds views for the page it shows (see :func:`views`)."""
    wanted = set(statuses or ["active"])
    found = [
        sub
        for sub in deps.store.list_subscriptions(organization_id)
        if sub.status in wanted
        and (external_customer_id is None or sub.external_customer_id == external_customer_id)
        and (plan_code is None or sub.plan_code == plan_code)
    ]
    found.sort(key=lambda sub: (sub.created_at, sub.lago_id), reverse=True)
    return found


def update(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    body: SubscriptionUpdateInput,
    now: datetime,
) -> SubscriptionView:
    def apply() -> Subscription:
        sub = find(deps, organization_id, external_id)
        if not sub.is_live:
            raise NotFound("subscription")
        customer = get_customer(deps, organization_id, sub.external_customer_id)
        check_payment_method(deps, customer, body.payment_method)
        changes: dict[str, object] = {"updated_at": iso(now)}
        fields = body.model_fields_set
        if "name" in fields:
            changes["name"] = body.name
        if "payment_method" in fields:
            changes["payment_method"] = body.payment_method
        if "subscription_at" in fields and body.subscription_at:
            if sub.status != "pending":
                raise ValidationFailed({"subscription_at": ["cannot_change_when_started"]})
            changes["subscription_at"] = iso(body.subscription_at)
            changes["next_billing_at"] = iso(max(body.subscription_at, now))
        if "ending_at" in fields:
            if body.ending_at and body.ending_at <= now:
                raise ValidationFailed({"ending_at": ["invalid_date"]})
            changes["ending_at"] = iso(body.ending_at) if body.ending_at else None
        updated = sub.model_copy(update=changes)
        if sub.status == "active" and "ending_at" in fields:
            view = _view(deps, organization_id, updated)
            updated = updated.model_copy(
                update={"next_billing_at": next_due(updated, view.plan, now, view.timezone)}
            )
        change = Change(deps)
        saved = change.save(updated, sub)
        change.commit_without_invoice()
        return saved

    return _view(deps, organization_id, retry_on_race(apply))


def terminate_subscription(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    *,
    status: str | None,
    generate_invoice: bool,
    now: datetime,
) -> SubscriptionView:
    """DELETE: a pending subscription is canceled; an active one ends now, billing the
    in-arrears time it used (unless ``on_termination_invoice=skip``)."""
    sub = find(deps, organization_id, external_id, status or "active")
    # Whatever fell due before now (a run not yet reached it) is billed first, as the run
    # would have, so the final invoice covers only what is left.
    work(
        deps,
        DueSubscription(
            organization_id=organization_id,
            external_id=sub.external_id,
            lago_id=sub.lago_id,
            now=iso(now),
        ),
    )

    def apply() -> Subscription:
        current = find(deps, organization_id, external_id, status or "active")
        view = _view(deps, organization_id, current)
        organization = _organization(deps, organization_id)
        customer = get_customer(deps, organization_id, current.external_customer_id)
        change = Change(deps)
        if current.status == "pending":
            saved = change.save(
                current.model_copy(
                    update={"status": "canceled", "canceled_at": iso(now), "next_billing_at": None}
                ),
                current,
            )
            change.events.append(
                subscription_webhook(
                    "subscription.canceled", saved, view.plan, customer, now, view.timezone
                )
            )
            change.commit_without_invoice()
            return saved
        ended, draft = terminate(current, view.plan, now, view.timezone, bill=generate_invoice)
        if draft:
            change.drafts.append(draft)
        saved = change.save(ended, current)
        change.events.append(
            subscription_webhook(
                "subscription.terminated", saved, view.plan, customer, now, view.timezone
            )
        )
        if current.next_subscription_id:
            successor = deps.store.get_subscription(
                organization_id, current.external_id, current.next_subscription_id
            )
            if successor is not None and successor.status == "pending":
                change.save(
                    successor.model_copy(update={"status": "canceled", "canceled_at": iso(now)}),
                    successor,
                )
        change.commit(
            organization,
            customer,
            stable_id("subscription-termination", current.lago_id),
            now,
            saved,
            view.plan.amount_currency,
        )
        return saved

    return _view(deps, organization_id, retry_on_race(apply))


__all__ = [
    "CreateSubscription",
    "SubscriptionUpdateInput",
    "SubscriptionView",
    "create",
    "get",
    "list_subscriptions",
    "terminate_subscription",
    "update",
    "views",
]
