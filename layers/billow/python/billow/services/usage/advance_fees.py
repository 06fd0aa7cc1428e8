"""Pay-in-advance charges: each event's fee invoiced at once, as Lago does (an invoice of
type ``subscription`` holding that one fee, with coupons and taxes, charged like any
other invoice).

The aggregator decides the fee as it folds the event and asks for it through the outbox
in the same transaction, so a fee is never lost to a crash; its invoice's id comes from
the subscription, the charge and the event's transaction id, so a repeated request finds
the invoice already issued.
"""

from __future__ import annotations

from typing import Literal

from billow.composition import Dependencies
from billow.domain.clock import stable_id, utcnow
from billow.messages import AdvanceFeeDue
from billow.services.invoicing import FeeDraft, issue_invoice
from billow.services.lookups import billing_context
from billow.services.usage.fees import charge_item

Outcome = Literal["invoiced", "orphaned"]


def invoice_advance_fee(deps: Dependencies, organization_id: str, fee: AdvanceFeeDue) -> Outcome:
    sub = deps.store.subscriptions.get(
        organization_id, fee.external_subscription_id, fee.subscription_id
    )
    context = billing_context(deps, organization_id, sub)
    if sub is None or context is None:
        return "orphaned"
    plan, organization, customer = context
    charge = next((c for c in plan.charges if c.lago_id == fee.charge_id), None)
    metric = (
        deps.store.usage.get_metric_by_id(organization_id, charge.billable_metric_id)
        if charge
        else None
    )
    if charge is None or metric is None:
        return "orphaned"
    charge_filter = next((f for f in charge.filters if f.lago_id == fee.charge_filter_id), None)
    draft = FeeDraft(
        key=f"advance:{charge.lago_id}:{fee.transaction_id}",
        item=charge_item(metric, charge, charge_filter),
        amount_cents=fee.amount_cents,
        unit_amount_cents=fee.amount_cents,
        units=fee.units,
        from_date=fee.period[0],
        to_date=fee.period[1],
        lago_subscription_id=sub.lago_id,
        external_subscription_id=sub.external_id,
        pay_in_advance=True,
        tax_code_choices=[charge.tax_codes, plan.tax_codes],
        coupon_plan_code=plan.code,
        charge_id=charge.lago_id,
        charge_filter_id=fee.charge_filter_id,
        events_count=1,
        total_aggregated_units=fee.units,
        precise_amount=fee.precise_amount,
        amount_details=fee.amount_details,
    )
    issue_invoice(
        deps,
        organization,
        customer,
        invoice_id=stable_id("advance-fee", sub.lago_id, charge.lago_id, fee.transaction_id),
        invoice_type="subscription",
        currency=plan.amount_currency,
        drafts=[draft],
        apply_coupons=True,
        issued_at=utcnow(),
        payment_method=sub.payment_method,
        billing_period=fee.period,
        subscription_ids=[sub.lago_id],
    )
    return "invoiced"
