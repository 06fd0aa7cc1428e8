"""Progressive billing (Lago's usage thresholds): when a period's usage reaches the plan's
next threshold, what it came to so far is invoiced at once (``progressive_billing``),
and the period's own invoice later bills only the rest.

The aggregator asks for a check whenever a subscription with thresholds has new usage.
A check reads the period's aggregates (O(charges)), and invoices the charges' growth
since the last progressive invoice, together with the period's progress record written
over the version it read: two checks at once, or a check racing the period's own
invoice, never invoice the same usage twice. The invoice's id comes from the period and
the threshold level, so a check repeated after a crash finds it issued.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from billow.adapters.table import Transaction
from billow.adapters.usage_records import group_key
from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id, utcnow
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.usage import period_key, thresholds_reached
from billow.messages import ThresholdCheckRequested
from billow.services.invoicing import FeeDraft, issue_invoice
from billow.services.lookups import billing_context
from billow.services.usage.fees import fee_draft, period_usage, usage_start

Outcome = Literal["invoiced", "below_next_threshold", "period_closed", "not_billed_here"]


def check_thresholds(
    deps: Dependencies, organization_id: str, check: ThresholdCheckRequested
) -> Outcome:
    sub = deps.store.subscriptions.get(
        organization_id, check.external_subscription_id, check.subscription_id
    )
    context = billing_context(deps, organization_id, sub)
    if sub is None or context is None or sub.status != "active":
        return "not_billed_here"
    plan, organization, customer = context
    thresholds = sub.thresholds(plan.usage_thresholds)
    if sub.billed_by != "billow" or not thresholds:
        return "not_billed_here"
    period = (datetime.fromisoformat(check.period[0]), datetime.fromisoformat(check.period[1]))
    now = utcnow()
    progress = deps.store.usage.get_progress(organization_id, sub.lago_id, period_key(period[0]))
    if progress.closed or period[1] <= now:
        return "period_closed"  # the period's own invoice bills what is left
    usages = [u for u in period_usage(deps, sub, plan, period) if not u.charge.pay_in_advance]
    usage_cents = sum(usage.amount_cents for usage in usages)
    level, threshold = thresholds_reached(thresholds, usage_cents)
    if level <= progress.level or threshold is None:
        return "below_next_threshold"
    span = (usage_start(sub, period[0]), period[1])
    drafts: list[FeeDraft] = []
    billed = dict(progress.billed)
    for usage in usages:
        for group in usage.groups:
            key = group_key(usage.charge.lago_id, group.filter_id)
            grown = group.amount.amount_cents - progress.billed.get(key, 0)
            if grown <= 0:
                continue
            draft = fee_draft(sub, plan, usage, group, span)
            drafts.append(
                draft.model_copy(update={"amount_cents": grown, "unit_amount_cents": grown})
            )
            billed[key] = group.amount.amount_cents
    applied = {
        "lifetime_usage_amount_cents": usage_cents,
        "created_at": iso(now),
        "usage_threshold": threshold.as_lago(),
    }

    def stage_more(transaction: Transaction) -> list[OutboxEvent]:
        deps.store.usage.stage_progress(
            transaction,
            organization_id,
            sub.lago_id,
            period_key(period[0]),
            progress.model_copy(update={"level": level, "billed": billed}),
        )
        body = sub.as_lago(plan.amount_cents, plan.amount_currency, period)
        body.update(
            {
                "plan": plan.as_lago([], active_subscriptions_count=1, draft_invoices_count=0),
                "customer": customer.as_lago(),
                "usage_threshold": threshold.as_lago(),
            }
        )
        return [
            webhook_event(
                organization_id, "subscription.usage_threshold_reached", "subscription", body
            )
        ]

    if not drafts:
        transaction = Transaction()
        transaction.publish(stage_more(transaction))
        deps.store.commit(transaction)
        return "invoiced"
    issue_invoice(
        deps,
        organization,
        customer,
        invoice_id=stable_id("progressive-billing", sub.lago_id, period_key(period[0]), str(level)),
        invoice_type="progressive_billing",
        currency=plan.amount_currency,
        drafts=drafts,
        apply_coupons=True,
        issued_at=now,
        payment_method=sub.payment_method,
        billing_period=(iso(span[0]), iso(span[1])),
        subscription_ids=[sub.lago_id],
        stage_more=stage_more,
        applied_usage_thresholds=[applied],
    )
    return "invoiced"
