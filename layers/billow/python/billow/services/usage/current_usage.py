"""A subscription's usage so far this period (Lago's ``current_usage``) and in its past
periods (``past_usage``): charges only, no subscription fee, coupons or credits, as Lago
shows them. Each period costs one Query of its aggregates, never a read of the events.
"""

from __future__ import annotations

from datetime import datetime

from billow.composition import Dependencies
from billow.domain.catalog import Plan, Tax, plain
from billow.domain.clock import iso
from billow.domain.customers import Customer
from billow.domain.errors import NotAllowed, NotFound
from billow.domain.invoice_math import FeeLine, TaxRate, compute_invoice
from billow.domain.periods import local_date
from billow.domain.subscriptions import Subscription
from billow.services.invoicing import taxes_for
from billow.services.lookups import get_customer, get_organization
from billow.services.subscription_billing import INSTANT, period_at, timezone_of
from billow.services.usage.fees import ChargeUsage, GroupUsage, period_usage, usage_start

PAST_PERIODS_MAX = 12


def _charge_usage(usage: ChargeUsage, currency: str) -> dict[str, object]:
    """Lago's CustomerChargeUsageObject."""

    def figures(group: GroupUsage) -> dict[str, object]:
        return {
            "units": plain(group.units),
            "total_aggregated_units": plain(group.units),
            "events_count": group.state.events_count,
            "amount_cents": group.amount.amount_cents,
        }

    filtered = [group for group in usage.groups if group.charge_filter is not None]
    return {
        "units": plain(usage.units),
        "total_aggregated_units": plain(usage.units),
        "events_count": usage.events_count,
        "amount_cents": usage.amount_cents,
        "amount_currency": currency,
        "charge": {
            "lago_id": usage.charge.lago_id,
            "charge_model": usage.charge.charge_model,
            "invoice_display_name": usage.charge.invoice_display_name,
        },
        "billable_metric": {
            "lago_id": usage.metric.lago_id,
            "name": usage.metric.name,
            "code": usage.metric.code,
            "aggregation_type": usage.metric.aggregation_type,
        },
        # A filtered charge shows each filter, then the events no filter took (priced by
        # the charge itself, named after it).
        "filters": [
            {
                **figures(group),
                "invoice_display_name": group.charge_filter.display_name
                if group.charge_filter
                else usage.charge.invoice_display_name or usage.metric.name,
                "values": group.charge_filter.values if group.charge_filter else {},
            }
            for group in usage.groups
        ]
        if filtered
        else [],
        "grouped_usage": [],
    }


def _usage_object(
    deps: Dependencies,
    sub: Subscription,
    plan: Plan,
    customer: Customer,
    period: tuple[datetime, datetime],
    timezone: str,
    apply_taxes: bool,
) -> dict[str, object]:
    usages = period_usage(deps, sub, plan, period)
    amount = sum(usage.amount_cents for usage in usages)
    taxes = 0
    if apply_taxes and amount:
        taxes = _taxes(deps, sub.organization_id, customer, plan, usages)
    return {
        "from_datetime": iso(usage_start(sub, period[0])),
        "to_datetime": iso(period[1] - INSTANT),
        "issuing_date": local_date(period[1], timezone).isoformat(),
        "lago_invoice_id": None,
        "currency": plan.amount_currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes,
        "total_amount_cents": amount + taxes,
        "charges_usage": [_charge_usage(usage, plan.amount_currency) for usage in usages],
    }


def _taxes(
    deps: Dependencies,
    organization_id: str,
    customer: Customer,
    plan: Plan,
    usages: list[ChargeUsage],
) -> int:
    """Taxes as the invoice would charge them, with Lago's precedence (the charge's, the
    plan's, the customer's, then the organization's)."""
    rates: dict[tuple[str, ...], list[Tax]] = {}
    lines: list[FeeLine] = []
    for usage in usages:
        choices = [usage.charge.tax_codes, plan.tax_codes]
        key = tuple(next((codes for codes in choices if codes), []))
        if key not in rates:  # charges with the same codes share one read
            rates[key] = taxes_for(deps, organization_id, customer, choices)
        lines.append(
            FeeLine(
                key=usage.charge.lago_id,
                amount_cents=usage.amount_cents,
                taxes=[TaxRate(code=t.code, name=t.name, rate=t.rate) for t in rates[key]],
            )
        )
    return compute_invoice(lines, []).taxes_amount_cents


def _active(
    deps: Dependencies, organization_id: str, customer: Customer, external_id: str
) -> Subscription:
    subscriptions = deps.store.subscriptions.list_for_external_id(organization_id, external_id)
    live = [s for s in subscriptions if s.external_customer_id == customer.external_id]
    if not live:
        raise NotFound("subscription")
    active = next((s for s in live if s.status == "active"), None)
    if active is None:
        raise NotAllowed("no_active_subscription")
    return active


def current_usage(
    deps: Dependencies,
    organization_id: str,
    external_customer_id: str,
    external_subscription_id: str,
    now: datetime,
    apply_taxes: bool = True,
) -> dict[str, object]:
    customer = get_customer(deps, organization_id, external_customer_id)
    sub = _active(deps, organization_id, customer, external_subscription_id)
    plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
    if plan is None:
        raise NotFound("plan")
    timezone = timezone_of(get_organization(deps, organization_id), customer)
    period = period_at(sub, plan, now, timezone)
    return _usage_object(
        deps, sub, plan, customer, (period.start, period.end), timezone, apply_taxes
    )


def past_usage(
    deps: Dependencies,
    organization_id: str,
    external_customer_id: str,
    external_subscription_id: str,
    now: datetime,
    periods_count: int,
) -> list[dict[str, object]]:
    """The subscription's last ``periods_count`` complete periods, newest first (one
    Query each)."""
    customer = get_customer(deps, organization_id, external_customer_id)
    subscriptions = [
        s
        for s in deps.store.subscriptions.list_for_external_id(
            organization_id, external_subscription_id
        )
        if s.external_customer_id == customer.external_id and s.started_at
    ]
    if not subscriptions:
        raise NotFound("subscription")
    sub = max(subscriptions, key=lambda s: s.started_at or "")
    plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
    if plan is None:
        raise NotFound("plan")
    timezone = timezone_of(get_organization(deps, organization_id), customer)
    started = datetime.fromisoformat(sub.started_at or "")
    end = datetime.fromisoformat(sub.terminated_at) if sub.terminated_at else now
    periods: list[dict[str, object]] = []
    at = period_at(sub, plan, end - INSTANT, timezone).start if not sub.terminated_at else end
    while len(periods) < min(periods_count, PAST_PERIODS_MAX) and at > started:
        period = period_at(sub, plan, at - INSTANT, timezone)
        periods.append(
            _usage_object(
                deps, sub, plan, customer, (period.start, period.end), timezone, apply_taxes=True
            )
        )
        at = period.start
    return periods
