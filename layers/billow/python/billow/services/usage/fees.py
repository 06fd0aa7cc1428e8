"""What a subscription's usage of one period costs, charge by charge: for the invoice at
the period's end, and for ``current_usage`` while the period runs.

Reads one Query of the period's aggregates (and, for recurring metrics, one of what
earlier periods carried), plus the plan's metrics: O(charges), whatever the number of
events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from billow.adapters.table import Transaction
from billow.adapters.usage_records import group_key
from billow.composition import Dependencies
from billow.domain import charge_models
from billow.domain.catalog import Plan, plain
from billow.domain.clock import iso, parse_iso
from billow.domain.invoices import FeeItem
from billow.domain.money import currency_exponent
from billow.domain.subscriptions import Subscription
from billow.domain.usage import (
    RECURRING_AGGREGATIONS,
    AggregateState,
    BillableMetric,
    Charge,
    ChargeFilter,
    period_key,
)
from billow.services.invoicing import FeeDraft


@dataclass(frozen=True)
class GroupUsage:
    """One charge's usage for one of its filters (or for the events no filter took)."""

    charge_filter: ChargeFilter | None
    state: AggregateState
    units: Decimal
    amount: charge_models.ChargeAmount
    carried: Decimal
    carried_at: str | None
    """The moment the carried value held at, as stored (None: nothing carried yet)."""

    @property
    def filter_id(self) -> str | None:
        return self.charge_filter.lago_id if self.charge_filter else None


@dataclass(frozen=True)
class ChargeUsage:
    charge: Charge
    metric: BillableMetric
    groups: list[GroupUsage]

    @property
    def units(self) -> Decimal:
        return sum((group.units for group in self.groups), Decimal(0))

    @property
    def events_count(self) -> int:
        return sum(group.state.events_count for group in self.groups)

    @property
    def amount_cents(self) -> int:
        return sum(group.amount.amount_cents for group in self.groups)


def period_usage(
    deps: Dependencies, sub: Subscription, plan: Plan, period: tuple[datetime, datetime]
) -> list[ChargeUsage]:
    """Every charge of the plan, with what the period's events add up to and cost."""
    if not plan.charges:
        return []
    organization_id = sub.organization_id
    metrics = deps.store.usage.get_metrics_by_id(
        organization_id, [charge.billable_metric_id for charge in plan.charges]
    )
    stored = {
        (aggregate.charge_id, aggregate.filter_id): aggregate.state
        for aggregate in deps.store.usage.period_aggregates(
            organization_id, sub.lago_id, period_key(period[0])
        )
    }
    recurring = any(
        metrics[c.billable_metric_id].recurring
        for c in plan.charges
        if c.billable_metric_id in metrics
    )
    carried = deps.store.usage.carried(organization_id, sub.lago_id) if recurring else {}
    usages: list[ChargeUsage] = []
    for charge in plan.charges:
        metric = metrics.get(charge.billable_metric_id)
        if metric is None:
            continue
        groups: list[GroupUsage] = []
        for charge_filter in [*charge.filters, None]:
            filter_id = charge_filter.lago_id if charge_filter else None
            state = stored.get((charge.lago_id, filter_id), AggregateState())
            value, at = (Decimal(0), None)
            if metric.recurring:
                value, at = carried.get((charge.lago_id, filter_id), (Decimal(0), None))
            units, amount = priced(
                metric, charge, charge_filter, state, value, period, plan.amount_currency
            )
            groups.append(GroupUsage(charge_filter, state, units, amount, value, at))
        usages.append(ChargeUsage(charge, metric, groups))
    return usages


def priced(
    metric: BillableMetric,
    charge: Charge,
    charge_filter: ChargeFilter | None,
    state: AggregateState,
    carried: Decimal,
    period: tuple[datetime, datetime],
    currency: str,
) -> tuple[Decimal, charge_models.ChargeAmount]:
    """An aggregate's units (rounded by the metric) and what the charge, or the filter it
    prices, makes of them."""
    properties = charge_models.parse_properties(
        charge.charge_model, charge_filter.properties if charge_filter else charge.properties
    )
    units = metric.rounded(state.units(metric, carried, period))
    usage = charge_models.Usage(
        units=units, events_count=state.events_count, first_event_values=state.first_values()
    )
    return units, charge_models.charge_amount(properties, usage, currency)


def advance_fee(
    metric: BillableMetric,
    charge: Charge,
    charge_filter: ChargeFilter | None,
    before: AggregateState,
    after: AggregateState,
    period: tuple[datetime, datetime],
    currency: str,
) -> tuple[Decimal, charge_models.ChargeAmount]:
    """What one event adds to a pay-in-advance charge, as Lago prices it: the charge's
    amount with the event, less its amount without it (units and amount)."""
    units_before, amount_before = priced(
        metric, charge, charge_filter, before, Decimal(0), period, currency
    )
    units_after, amount_after = priced(
        metric, charge, charge_filter, after, Decimal(0), period, currency
    )
    return units_after - units_before, charge_models.ChargeAmount(
        amount_cents=amount_after.amount_cents - amount_before.amount_cents,
        precise_amount=amount_after.precise_amount - amount_before.precise_amount,
        unit_amount_cents=amount_after.amount_cents - amount_before.amount_cents,
        amount_details=amount_after.amount_details,
    )


def usage_start(sub: Subscription, period_start: datetime) -> datetime:
    """Where a period's usage is counted from: its start, or the subscription's if later."""
    return max(period_start, parse_iso(sub.started_at)) if sub.started_at else period_start


def charge_item(
    metric: BillableMetric, charge: Charge, charge_filter: ChargeFilter | None
) -> FeeItem:
    """A charge fee's item: the metric it bills, and the filter it prices if any."""
    return FeeItem(
        type="charge",
        code=metric.code,
        name=metric.name,
        invoice_display_name=charge.invoice_display_name,
        lago_item_id=metric.lago_id,
        filter_invoice_display_name=charge_filter.display_name if charge_filter else None,
        filters=charge_filter.values if charge_filter else None,
    )


def fee_draft(
    sub: Subscription,
    plan: Plan,
    usage: ChargeUsage,
    group: GroupUsage,
    span: tuple[datetime, datetime],
) -> FeeDraft:
    charge, metric = usage.charge, usage.metric
    charge_filter = group.charge_filter
    return FeeDraft(
        key=f"charge:{sub.lago_id}:{charge.lago_id}:{group.filter_id or '-'}",
        item=charge_item(metric, charge, charge_filter),
        amount_cents=group.amount.amount_cents,
        unit_amount_cents=group.amount.unit_amount_cents,
        units=plain(group.units),
        from_date=iso(span[0]),
        to_date=iso(span[1] - timedelta(seconds=1)),
        lago_subscription_id=sub.lago_id,
        external_subscription_id=sub.external_id,
        tax_code_choices=[charge.tax_codes, plan.tax_codes],
        coupon_plan_code=plan.code,
        charge_id=charge.lago_id,
        charge_filter_id=group.filter_id,
        events_count=group.state.events_count,
        total_aggregated_units=plain(usage.units),
        precise_amount=plain(group.amount.precise_amount),
        amount_details=group.amount.amount_details,
    )


def _true_up(
    sub: Subscription,
    plan: Plan,
    usage: ChargeUsage,
    parent: FeeDraft,
    period: tuple[datetime, datetime],
    span: tuple[datetime, datetime],
) -> FeeDraft | None:
    """Lago's minimum spend: the charge's minimum, prorated to the days billed, less what
    its usage came to, as a fee of its own when positive."""
    minimum = usage.charge.min_amount_cents
    if not minimum:
        return None
    period_days = max(1, round((period[1] - period[0]) / timedelta(days=1)))
    billed_days = max(0, round((span[1] - span[0]) / timedelta(days=1)))
    prorated = minimum * billed_days // period_days if billed_days < period_days else minimum
    shortfall = prorated - usage.amount_cents
    if shortfall <= 0:
        return None
    exponent = currency_exponent(plan.amount_currency)
    return parent.model_copy(
        update={
            "key": f"true_up:{sub.lago_id}:{usage.charge.lago_id}",
            "amount_cents": shortfall,
            "unit_amount_cents": shortfall,
            "units": "1",
            "events_count": 0,
            "total_aggregated_units": "1",
            "precise_amount": plain(Decimal(shortfall).scaleb(-exponent)),
            "amount_details": {},
            "charge_filter_id": None,
            "true_up_of": parent.key,
            "description": "Minimum spend true-up",
        }
    )


def remainder(draft: FeeDraft, billed: int) -> FeeDraft:
    """A charge's fee less what progressive billing already invoiced of it this period."""
    if not billed:
        return draft
    amount = max(0, draft.amount_cents - billed)
    return draft.model_copy(
        update={
            "amount_cents": amount,
            "unit_amount_cents": amount,
            "description": f"Less {billed} already invoiced within the period",
        }
    )


def usage_fees(
    deps: Dependencies,
    sub: Subscription,
    plan: Plan,
    period: tuple[datetime, datetime],
    span: tuple[datetime, datetime],
) -> tuple[list[FeeDraft], Callable[[Transaction], None]]:
    """The in-arrears charge fees of a period that ends (or is cut short by a
    termination) at ``span[1]``, less what progressive billing invoiced of them, and the
    writes that must commit with their invoice: what recurring metrics carry into the
    next period, and the period closed to progressive billing, each exactly once."""
    drafts: list[FeeDraft] = []
    usages = period_usage(deps, sub, plan, period)
    progress = deps.store.usage.get_progress(
        sub.organization_id, sub.lago_id, period_key(period[0])
    )
    for usage in usages:
        if usage.charge.pay_in_advance:
            continue  # each event's fee was invoiced as it came (advance_fees)
        charge_drafts = [
            remainder(
                fee_draft(sub, plan, usage, group, span),
                progress.billed.get(group_key(usage.charge.lago_id, group.filter_id), 0),
            )
            for group in usage.groups
            if group.units or group.amount.amount_cents or group.state.events_count
        ]
        drafts.extend(charge_drafts)
        if charge_drafts or usage.charge.min_amount_cents:
            parent = (
                charge_drafts[0]
                if charge_drafts
                else fee_draft(sub, plan, usage, usage.groups[-1], span)
            )
            true_up = _true_up(sub, plan, usage, parent, period, span)
            if true_up is not None:
                drafts.append(true_up)

    def stage_writes(transaction: Transaction) -> None:
        if sub.thresholds(plan.usage_thresholds) or progress.version is not None:
            deps.store.usage.stage_progress(
                transaction,
                sub.organization_id,
                sub.lago_id,
                period_key(period[0]),
                progress.model_copy(update={"closed": True}),
            )
        for usage in usages:
            if (
                not usage.metric.recurring
                or usage.metric.aggregation_type not in RECURRING_AGGREGATIONS
            ):
                continue
            for group in usage.groups:
                deps.store.usage.stage_carry(
                    transaction,
                    sub.organization_id,
                    sub.lago_id,
                    usage.charge.lago_id,
                    group.filter_id,
                    group.carried + group.state.total,
                    iso(span[1]),
                    group.carried_at,
                )

    return drafts, stage_writes
