"""Plans (Lago's /plans): a recurring fee per interval and usage charges
(``billow.services.plan_charges``)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from billow.adapters.billing_records import SubscriptionSelection
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Interval, Name, Number, Plan, Tax, Text
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import ValidationFailed
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.identifiers import Identifier, IdentifierList
from billow.domain.money import ChargeableCents, Currency
from billow.services.catalog_writes import (
    CatalogInput,
    code_taken,
    commit_claiming_code,
    updates_from,
)
from billow.services.lookups import get_plan, require_taxes
from billow.services.plan_charges import (
    ChargeInputs,
    UsageThresholdInputs,
    build_charges,
    build_thresholds,
    stage_metric_uses,
)
from billow.services.stripe_sync_requests import stage_sync, sync_views
from billow.services.subscriptions.terminate import terminate_subscription


def _not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("value_is_out_of_range")
    return value


Days = Annotated[Number, AfterValidator(_not_negative)]


class PlanInput(CatalogInput):
    """Lago's PlanUpdateInput.plan, as far as Billow supports it."""

    name: Name | None = None
    invoice_display_name: Annotated[str, Field(max_length=255)] | None = None
    code: Identifier | None = None
    interval: Interval | None = None
    description: Text | None = None
    amount_cents: ChargeableCents | None = None
    amount_currency: Currency | None = None
    trial_period: Days | None = None
    pay_in_advance: bool | None = None
    tax_codes: IdentifierList | None = None
    charges: ChargeInputs | None = None
    fixed_charges: list[Any] | None = None
    usage_thresholds: UsageThresholdInputs | None = None
    minimum_commitment: dict[str, Any] | None = None


class PlanCreateInput(PlanInput):
    """Lago's PlanCreateInput.plan."""

    name: Name
    code: Identifier
    interval: Interval
    amount_cents: ChargeableCents
    amount_currency: Currency


NULLABLE = frozenset({"invoice_display_name", "description"})
BILLING_TERMS = frozenset({"code", "interval", "amount_currency", "pay_in_advance"})
"""What subscriptions are billed on; kept as they are once a plan has subscriptions."""


def _refuse_usage_billing(given: PlanInput) -> None:
    unsupported: dict[str, object] = {
        field: ["not_supported"]
        for field in ("fixed_charges", "minimum_commitment")
        if getattr(given, field)
    }
    if unsupported:
        raise ValidationFailed(unsupported)


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[Plan], int]:
    """Page ``page`` of the live plans, newest first, and how many there are."""
    return deps.store.plans.list_page(organization_id, (page - 1) * per_page, per_page)


def _body(
    plan: Plan, taxes: Sequence[Tax], active_subscriptions: int, charge_taxes: dict[str, Tax]
) -> dict[str, object]:
    # Billow finalizes every invoice as it issues it: no plan ever has draft invoices.
    return plan.as_lago(
        taxes,
        active_subscriptions_count=active_subscriptions,
        draft_invoices_count=0,
        charge_taxes=charge_taxes,
    )


def present(
    deps: Dependencies, organization_id: str, plans: Sequence[Plan]
) -> list[dict[str, object]]:
    taxes = {tax.code: tax for tax in deps.store.taxes.list_all(organization_id)}
    active = deps.store.subscriptions.count_active_by_plan(
        organization_id, [plan.lago_id for plan in plans]
    )
    mirrored = sync_views(deps, organization_id, "plan", [plan.lago_id for plan in plans])
    return [
        {
            **_body(
                plan,
                [taxes[code] for code in plan.tax_codes if code in taxes],
                active[plan.lago_id],
                taxes,
            ),
            "stripe_sync": mirrored[plan.lago_id],
        }
        for plan in plans
    ]


def _announce(
    deps: Dependencies, webhook_type: str, plan: Plan, active_subscriptions: int
) -> OutboxEvent:
    codes = {*plan.tax_codes, *(code for charge in plan.charges for code in charge.tax_codes)}
    taxes = {tax.code: tax for tax in deps.store.taxes.get_many(plan.organization_id, codes)}
    body = _body(
        plan,
        [taxes[code] for code in plan.tax_codes if code in taxes],
        active_subscriptions,
        taxes,
    )
    return webhook_event(plan.organization_id, webhook_type, "plan", body)


def create_plan(deps: Dependencies, organization_id: str, given: PlanCreateInput) -> Plan:
    _refuse_usage_billing(given)
    taxes = require_taxes(deps, organization_id, given.tax_codes)
    if deps.store.plans.get(organization_id, given.code) is not None:
        raise code_taken()
    charges = build_charges(deps, organization_id, given.charges or [], [])
    plan = Plan(
        lago_id=new_id(),
        organization_id=organization_id,
        code=given.code,
        name=given.name,
        invoice_display_name=given.invoice_display_name,
        description=given.description,
        interval=given.interval,
        amount_cents=given.amount_cents,
        amount_currency=given.amount_currency,
        trial_period=given.trial_period or Decimal(0),
        pay_in_advance=bool(given.pay_in_advance),
        tax_codes=[tax.code for tax in taxes],
        charges=charges,
        usage_thresholds=build_thresholds(given.usage_thresholds or [], []),
        created_at=iso(utcnow()),
    )
    transaction = Transaction()
    deps.store.plans.stage(transaction, plan, None)
    stage_metric_uses(deps, transaction, organization_id, [], plan.charges)
    stage_sync(deps, transaction, organization_id, "plan", plan.lago_id, plan.code, plan.version)
    transaction.publish([_announce(deps, "plan.created", plan, 0)])
    commit_claiming_code(deps, transaction, lambda: True)
    return plan


def update_plan(deps: Dependencies, organization_id: str, code: str, given: PlanInput) -> Plan:
    """Lago's partial update. Once a plan has subscriptions its billing terms stay."""
    _refuse_usage_billing(given)
    before = get_plan(deps, organization_id, code)
    updates = {
        name: value
        for name, value in updates_from(given, NULLABLE).items()
        if name in Plan.model_fields
    }
    if "tax_codes" in updates:
        updates["tax_codes"] = [
            tax.code for tax in require_taxes(deps, organization_id, given.tax_codes)
        ]
    if given.charges is not None:
        # Lago applies a plan's new charges to its running subscriptions at once: Billow
        # bills each period's usage with the plan's charges as they are at its end.
        updates["charges"] = build_charges(deps, organization_id, given.charges, before.charges)
    if given.usage_thresholds is not None:
        updates["usage_thresholds"] = build_thresholds(
            given.usage_thresholds, before.usage_thresholds
        )
    subscriptions = deps.store.subscriptions.count_by_plan(organization_id, before.lago_id)
    if sum(subscriptions.values()):
        updates = {name: value for name, value in updates.items() if name not in BILLING_TERMS}
    after = before.model_copy(update={**updates, "version": before.version + 1})
    renamed = after.code != before.code
    if renamed:
        if deps.store.plans.get(organization_id, after.code) is not None:
            raise code_taken()
        _rename_in_coupons(deps, organization_id, before.code, after.code)
    transaction = Transaction()
    deps.store.plans.stage(transaction, after, before)
    stage_metric_uses(deps, transaction, organization_id, before.charges, after.charges)
    stage_sync(deps, transaction, organization_id, "plan", after.lago_id, after.code, after.version)
    transaction.publish([_announce(deps, "plan.updated", after, subscriptions["active"])])
    commit_claiming_code(
        deps,
        transaction,
        (lambda: deps.store.plans.get(organization_id, after.code) is not None)
        if renamed
        else None,
    )
    return after


def delete_plan(deps: Dependencies, organization_id: str, code: str) -> Plan:
    """Marks the plan deleted and frees its code; it stays readable by id for the
    subscriptions and invoices that refer to it. As Lago does, its subscriptions end:
    active ones are terminated (billing what they used), pending ones canceled."""
    before = get_plan(deps, organization_id, code)
    after = before.model_copy(update={"deleted_at": iso(utcnow()), "version": before.version + 1})
    transaction = Transaction()
    deps.store.plans.stage(transaction, after, before)
    stage_metric_uses(deps, transaction, organization_id, before.charges, [])
    stage_sync(deps, transaction, organization_id, "plan", after.lago_id, after.code, after.version)
    active = deps.store.subscriptions.count_by_plan(organization_id, after.lago_id)["active"]
    transaction.publish([_announce(deps, "plan.deleted", after, active)])
    deps.store.commit(transaction)
    now = utcnow()
    # A plan keeps its code while it has subscriptions (``BILLING_TERMS``), so its live
    # ones are those its code lists.
    live = SubscriptionSelection(statuses=("pending", "active"), plan=after.code)
    for sub in list(deps.store.subscriptions.list_in(organization_id, live)):
        if sub.plan_lago_id == after.lago_id:
            terminate_subscription(
                deps,
                organization_id,
                sub.external_id,
                status=sub.status,
                generate_invoice=True,
                now=now,
            )
    return after


def _rename_in_coupons(deps: Dependencies, organization_id: str, old: str, new: str) -> None:
    """Coupons limited to a plan name it by code: follow the plan to its new code. Runs
    before the plan is renamed, so a request that fails part-way can be sent again."""

    def swap(codes: list[str]) -> list[str]:
        return list(dict.fromkeys(new if code == old else code for code in codes))

    for coupon in deps.store.coupons.list_with_deleted(organization_id):
        if old in coupon.plan_codes:
            transaction = Transaction()
            deps.store.coupons.stage(
                transaction,
                coupon.model_copy(
                    update={"plan_codes": swap(coupon.plan_codes), "version": coupon.version + 1}
                ),
                coupon,
            )
            deps.store.commit(transaction)
    for applied in deps.store.applied_coupons.list_all(organization_id):
        if applied.status == "active" and old in applied.plan_codes:
            transaction = Transaction()
            deps.store.applied_coupons.stage(
                transaction,
                applied.model_copy(
                    update={"plan_codes": swap(applied.plan_codes), "version": applied.version + 1}
                ),
                applied,
            )
            deps.store.commit(transaction)
