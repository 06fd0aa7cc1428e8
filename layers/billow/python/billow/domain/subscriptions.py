"""Subscriptions: a customer on a plan, and when each of its invoices falls due."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from billow.domain.clock import iso
from billow.domain.usage import UsageThreshold

SubscriptionStatus = Literal["pending", "active", "terminated", "canceled"]
BillingTime = Literal["calendar", "anniversary"]
DUE_INDEX_SHARDS = 8
"""The due index is spread over this many partitions so no one partition runs hot."""


class PaymentMethodChoice(BaseModel):
    """Lago's ``payment_method`` on subscriptions and invoices."""

    payment_method_type: Literal["provider", "manual"] = "provider"
    payment_method_id: str | None = None


class Authorization(BaseModel):
    """The pre-authorization hold placed (and released) before the subscription was made."""

    id: str
    object: str = "payment_intent"
    amount: int
    amount_capturable: int
    currency: str
    status: str


class CheckoutLink(BaseModel):
    """Stripe's hosted checkout that starts a subscription: it stays ``pending`` until the
    customer completes the page, and is canceled if the page expires unused."""

    session_id: str
    url: str
    expires_at: str


class Subscription(BaseModel):
    lago_id: str
    organization_id: str
    external_id: str
    lago_customer_id: str
    external_customer_id: str
    name: str | None = None
    plan_lago_id: str
    plan_code: str
    status: SubscriptionStatus
    billing_time: BillingTime = "calendar"
    subscription_at: str
    started_at: str | None = None
    initial_started_at: str | None = None
    """When the first subscription of this external id started: trials run from here."""
    ending_at: str | None = None
    terminated_at: str | None = None
    canceled_at: str | None = None
    trial_ended_at: str | None = None
    previous_plan_code: str | None = None
    next_plan_code: str | None = None
    next_subscription_id: str | None = None
    downgrade_plan_date: str | None = None
    payment_method: PaymentMethodChoice | None = None
    next_billing_at: str | None = None
    """When this subscription is next due for the billing run (None once it is over)."""
    billed_by: Literal["billow", "stripe"] = "billow"
    """Who invoices it: Billow's billing run, or Stripe Billing (synced, seed 004). The
    run still walks a Stripe-billed subscription's life (start, plan swaps, end) but
    issues it no invoice."""
    stripe_subscription_id: str | None = None
    """The Stripe subscription that bills it; an upgrade's successor inherits it."""
    stripe_starts_at: str | None = None
    """When Stripe took over one Billow billed first (its trial's end, or the period
    boundary after sync was turned on); Stripe bills from there."""
    not_synced_reason: str | None = None
    """Why Billow bills it itself (``free_plan``, ``trial``…), decided when it was made."""
    billed_until: str | None = None
    """End of the last span of time invoiced: no span is ever invoiced twice."""
    checkout: CheckoutLink | None = None
    usage_thresholds: list[UsageThreshold] | None = None
    """Its own progressive billing thresholds (Lago's ``plan_overrides``), in place of
    the plan's; None follows the plan."""
    """The hosted checkout it waits for, when made through one."""
    created_at: str
    updated_at: str
    version: int = 0

    @property
    def is_live(self) -> bool:
        return self.status in {"pending", "active"}

    def thresholds(self, plan_thresholds: list[UsageThreshold]) -> list[UsageThreshold]:
        """The progressive billing thresholds it is billed by: its own, else its plan's."""
        return self.usage_thresholds if self.usage_thresholds is not None else plan_thresholds

    def trial_over(self, at: datetime) -> bool:
        """No trial, or one that has ended by ``at``."""
        return self.trial_ended_at is None or datetime.fromisoformat(self.trial_ended_at) <= at

    def due_at(self) -> datetime | None:
        return datetime.fromisoformat(self.next_billing_at) if self.next_billing_at else None

    def as_lago(
        self,
        plan_amount_cents: int,
        plan_amount_currency: str,
        period: tuple[datetime, datetime] | None,
        authorization: Authorization | None = None,
    ) -> dict[str, object]:
        body: dict[str, object] = {
            "lago_id": self.lago_id,
            "external_id": self.external_id,
            "lago_customer_id": self.lago_customer_id,
            "external_customer_id": self.external_customer_id,
            "billing_entity_code": "default",
            "name": self.name,
            "plan_code": self.plan_code,
            "plan_amount_cents": plan_amount_cents,
            "plan_amount_currency": plan_amount_currency,
            "status": self.status,
            "billing_time": self.billing_time,
            "subscription_at": self.subscription_at,
            "started_at": self.started_at,
            "ending_at": self.ending_at,
            "terminated_at": self.terminated_at,
            "canceled_at": self.canceled_at,
            "created_at": self.created_at,
            "previous_plan_code": self.previous_plan_code,
            "next_plan_code": self.next_plan_code,
            "downgrade_plan_date": self.downgrade_plan_date,
            "trial_ended_at": self.trial_ended_at,
            "current_billing_period_started_at": iso(period[0]) if period else None,
            "current_billing_period_ending_at": iso(period[1]) if period else None,
            "on_termination_credit_note": None,
            "on_termination_invoice": "generate",
            "payment_method": (self.payment_method or PaymentMethodChoice()).model_dump(),
            "checkout_url": self.checkout.url
            if self.checkout and self.status == "pending"
            else None,
        }
        if authorization is not None:
            body["authorization"] = authorization.model_dump(exclude={"currency"})
        return body


def due_shard(subscription_id: str) -> int:
    """A stable shard for the due index, from the id's last hex digits."""
    return int(subscription_id.replace("-", "")[-4:], 16) % DUE_INDEX_SHARDS


def is_upgrade(old_yearly_cents: int, new_yearly_cents: int) -> bool:
    """Lago's rule: a plan worth at least as much per year applies at once; less waits."""
    return new_yearly_cents >= old_yearly_cents


YEARLY_FACTOR = {"weekly": 52, "monthly": 12, "quarterly": 4, "yearly": 1}


def live_at(subscriptions: Iterable[Subscription], moment: datetime) -> Subscription | None:
    """The generation of an external id that was running at ``moment``: usage is counted
    from a subscription's start until its termination, as Lago counts it."""
    for sub in subscriptions:
        if sub.started_at is None or datetime.fromisoformat(sub.started_at) > moment:
            continue
        if sub.terminated_at is None or moment < datetime.fromisoformat(sub.terminated_at):
            return sub
    return None
