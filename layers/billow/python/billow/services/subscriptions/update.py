"""PUT /subscriptions/{external_id}: name, payment method and dates of a live subscription."""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain.clock import iso
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.subscriptions import Subscription
from billow.services.lookups import check_payment_method, get_customer
from billow.services.retries import retry_on_race
from billow.services.subscription_billing import Change, next_due
from billow.services.subscriptions.finding import find
from billow.services.subscriptions.requests import SubscriptionUpdateInput
from billow.services.subscriptions.views import SubscriptionView, view_of


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
            view = view_of(deps, organization_id, updated)
            updated = updated.model_copy(
                update={"next_billing_at": next_due(updated, view.plan, now, view.timezone)}
            )
        change = Change(deps)
        saved = change.save(updated, sub)
        change.commit_without_invoice()
        return saved

    return view_of(deps, organization_id, retry_on_race(apply))
