"""DELETE /subscriptions/{external_id}: cancel a pending subscription, end an active one."""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id
from billow.domain.subscriptions import Subscription, SubscriptionStatus
from billow.services.billing_run import DueSubscription
from billow.services.invoice_work import work
from billow.services.lookups import get_customer, get_organization
from billow.services.retries import retry_on_race
from billow.services.subscription_billing import (
    Change,
    cancel_pending,
    subscription_webhook,
    terminate,
)
from billow.services.subscriptions.finding import find
from billow.services.subscriptions.views import SubscriptionView, view_of


def terminate_subscription(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    *,
    status: SubscriptionStatus | None,
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
        view = view_of(deps, organization_id, current)
        organization = get_organization(deps, organization_id)
        customer = get_customer(deps, organization_id, current.external_customer_id)
        change = Change(deps)
        if current.status == "pending":
            saved = cancel_pending(change, current, view.plan, customer, now, view.timezone)
            change.commit_without_invoice()
            return saved
        ended, draft = terminate(current, view.plan, now, view.timezone, bill=generate_invoice)
        if draft:
            change.drafts.append(draft)
        if generate_invoice:
            change.bill_usage(current, view.plan, now, view.timezone)
        saved = change.save(ended, current)
        change.events.append(
            subscription_webhook(
                "subscription.terminated", saved, view.plan, customer, now, view.timezone
            )
        )
        if current.next_subscription_id:
            successor = deps.store.subscriptions.get(
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

    return view_of(deps, organization_id, retry_on_race(apply))
