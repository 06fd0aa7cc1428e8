"""Lago's subscription object as served."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from billow.api.responses.common import LagoObject, PaginationMeta, StripeSyncObject, Timestamp
from billow.domain.subscriptions import BillingTime, SubscriptionStatus


class SubscriptionPaymentMethod(LagoObject):
    payment_method_type: Literal["provider", "manual"]
    payment_method_id: str | None


class SubscriptionAuthorization(LagoObject):
    """The hold placed on the card, and released, before the subscription was made."""

    id: str
    object: str
    amount: int
    amount_capturable: int
    status: str


class SubscriptionObject(LagoObject):
    lago_id: str
    external_id: str
    lago_customer_id: str
    external_customer_id: str
    billing_entity_code: str
    name: str | None
    plan_code: str
    plan_amount_cents: int
    plan_amount_currency: str
    status: SubscriptionStatus
    billing_time: BillingTime
    subscription_at: Timestamp
    started_at: Timestamp | None
    ending_at: Timestamp | None
    terminated_at: Timestamp | None
    canceled_at: Timestamp | None
    created_at: Timestamp
    previous_plan_code: str | None
    next_plan_code: str | None
    downgrade_plan_date: str | None
    trial_ended_at: Timestamp | None
    current_billing_period_started_at: Timestamp | None
    current_billing_period_ending_at: Timestamp | None
    on_termination_credit_note: None
    on_termination_invoice: Literal["generate", "skip"]
    payment_method: SubscriptionPaymentMethod
    checkout_url: str | None
    """Stripe's hosted checkout that starts it, while it waits for the customer."""
    stripe_sync: StripeSyncObject
    """Whether Stripe Billing invoices it (``succeeded``: its Stripe subscription) or
    Billow does (``not_required``, with the rule that applied)."""
    authorization: SubscriptionAuthorization | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    """Only in the answer to a creation that asked for an authorization."""


class SubscriptionResponse(LagoObject):
    subscription: SubscriptionObject


class SubscriptionsPage(LagoObject):
    subscriptions: list[SubscriptionObject]
    meta: PaginationMeta
