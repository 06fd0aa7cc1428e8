"""Turning ``sync_subscriptions`` on: the subscriptions Billow bills that Stripe would
bill now change hands.

A pending one has billed nothing yet: Stripe takes it at once, and bills from its start.
An active one is marked to change hands at its next period boundary. Billow has billed
(or, in arrears, will bill) the period under way, and handing over in the middle of it
would bill part of it twice or not at all. So the billing run, reaching the boundary,
bills what Billow still owes for the ending period and hands the subscription to Stripe,
which bills every period from there (``subscription_billing``).
"""

from __future__ import annotations

from billow.adapters.billing_records import SubscriptionSelection
from billow.composition import Dependencies
from billow.domain.clock import utcnow
from billow.domain.stripe_sync import HANDOVER_NEXT_PERIOD, IN_TRIAL
from billow.services.retries import retry_on_race
from billow.services.stripe_sync_requests import billing_owner
from billow.services.subscription_billing import Change


def hand_over_at_next_period(deps: Dependencies, organization_id: str) -> int:
    """Hand over (pending) or mark (active) each Billow-billed subscription Stripe would
    now bill; returns how many. Doing it twice is harmless: a marked one is left as it is."""
    marked = 0
    for sub in deps.store.subscriptions.list_in(
        organization_id, SubscriptionSelection(statuses=["active", "pending"])
    ):
        if sub.billed_by != "billow" or sub.not_synced_reason in (HANDOVER_NEXT_PERIOD, IN_TRIAL):
            continue
        if _mark(deps, organization_id, sub.external_id, sub.lago_id):
            marked += 1
    return marked


def _mark(deps: Dependencies, organization_id: str, external_id: str, lago_id: str) -> bool:
    def mark() -> bool:
        sub = deps.store.subscriptions.get(organization_id, external_id, lago_id)
        if sub is None or not sub.is_live or sub.billed_by != "billow":
            return False
        customer = deps.store.customers.get(organization_id, sub.external_customer_id)
        plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
        if customer is None or plan is None:
            return False
        owner, reason = billing_owner(deps, customer, plan, trial_over=sub.trial_over(utcnow()))
        if owner == "stripe" and sub.status == "pending":
            changed = sub.model_copy(update={"billed_by": "stripe", "not_synced_reason": None})
        else:
            wanted = HANDOVER_NEXT_PERIOD if owner == "stripe" else reason
            if wanted == sub.not_synced_reason:
                return False
            changed = sub.model_copy(update={"not_synced_reason": wanted})
        change = Change(deps)
        change.save(changed, sub)
        change.commit_without_invoice()
        return owner == "stripe"

    return retry_on_race(mark)
