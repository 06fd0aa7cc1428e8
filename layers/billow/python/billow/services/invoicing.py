"""Issuing invoices: fees, coupons and taxes, and the events they cause.

An invoice, the coupons it consumes and the change that bills it (a subscription's
renewal) are one transaction, and an invoice's id is derived from what it bills (a
subscription's period, an API request), so a repeated run, an overlapping run or a
retried message finds the invoice already there instead of issuing a second one. The
invoice then waits for its gap-free number, its ``invoice.created`` webhook and its
charge, which ``billow.services.invoice_numbering`` gives it right after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field

from billow.adapters.invoice_numbering import NumberSequence
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import AppliedCoupon, Tax
from billow.domain.clock import iso, stable_id
from billow.domain.customers import Customer
from billow.domain.errors import ConcurrentUpdate, ProviderError, ValidationFailed
from billow.domain.events import OutboxEvent
from billow.domain.invoice_math import (
    CouponState,
    FeeLine,
    InvoiceTotals,
    TaxRate,
    compute_invoice,
    with_service_taxes,
)
from billow.domain.invoices import (
    AppliedTax,
    CouponCreditLine,
    Fee,
    FeeItem,
    Invoice,
    InvoiceType,
    PaymentBlock,
    draft_number,
)
from billow.domain.money import stripe_can_charge
from billow.domain.organizations import BillingHints, Organization
from billow.domain.periods import local_date
from billow.domain.subscriptions import PaymentMethodChoice
from billow.ports import TaxCalculation
from billow.services import stripe_tax as stripe_tax_service
from billow.services.invoice_numbering import commit_issued


class FeeDraft(BaseModel):
    """A fee before coupons and taxes."""

    key: str
    item: FeeItem
    amount_cents: int
    unit_amount_cents: int
    units: str = "1"
    from_date: str | None = None
    to_date: str | None = None
    lago_subscription_id: str | None = None
    external_subscription_id: str | None = None
    pay_in_advance: bool = False
    description: str | None = None
    tax_code_choices: list[list[str]] = Field(default_factory=list)
    """Candidate tax code lists in precedence order; the first non-empty one applies."""
    coupon_plan_code: str | None = None
    charge_id: str | None = None
    charge_filter_id: str | None = None
    events_count: int | None = None
    total_aggregated_units: str | None = None
    precise_amount: str | None = None
    amount_details: dict[str, object] = Field(default_factory=dict)
    true_up_of: str | None = None
    """For a minimum-spend true-up: the key of the charge fee it tops up."""


@dataclass(frozen=True)
class AlreadyRead:
    """What a caller read with its own reads (one BatchGetItem), so issuing does not read
    it again: the customer's active coupons (an empty list when their counter says there
    are none) and the organization's number sequence (stale, it only loses its race)."""

    active_coupons: list[AppliedCoupon] | None = None
    sequence: NumberSequence | None = None


def taxes_for(
    deps: Dependencies,
    organization_id: str,
    customer: Customer,
    choices: list[list[str]],
    hints: BillingHints | None = None,
) -> list[Tax]:
    """Lago's precedence: the fee's own codes, its item's, then the customer's, then the
    organization's default taxes (not read when its ``hints`` count none)."""
    for codes in [*choices, customer.tax_codes]:
        if codes:
            return deps.store.taxes.get_many(organization_id, codes)
    if hints is not None and hints.default_taxes == 0:
        return []
    return deps.store.taxes.list_organization_defaults(organization_id)


def _coupon_state(coupon: AppliedCoupon) -> CouponState:
    return CouponState(
        lago_id=coupon.lago_id,
        coupon_type=coupon.coupon_type,
        amount_cents=coupon.amount_cents,
        percentage_rate=coupon.percentage_rate,
        frequency=coupon.frequency,
        frequency_duration_remaining=coupon.frequency_duration_remaining,
        amount_cents_remaining=coupon.amount_cents_remaining,
        plan_codes=coupon.plan_codes,
    )


def _applied_tax(
    tax: Tax | None, code: str, name: str, rate: Decimal, amount_cents: int, base_cents: int
) -> AppliedTax:
    """One of Billow's taxes (``tax``), or one Stripe Tax computed (no Billow tax)."""
    return AppliedTax(
        lago_tax_id=tax.lago_id if tax else None,
        tax_description=tax.description if tax else stripe_tax_service.TAX_NAME,
        tax_code=code,
        tax_name=name,
        tax_rate=str(rate),
        amount_cents=amount_cents,
        fees_amount_cents=base_cents,
    )


def _payment_block(
    customer: Customer, choice: PaymentMethodChoice | None, skip_psp: bool
) -> PaymentBlock | None:
    if skip_psp:
        return "skip_psp"
    if choice is not None and choice.payment_method_type == "manual":
        return "manual"
    if not customer.stripe_customer_id:
        return "no_payment_provider"
    return None


_Taxed = tuple[InvoiceTotals, dict[str, list[Tax]], TaxCalculation | None, OutboxEvent | None]


def _taxed(
    deps: Dependencies,
    organization: Organization,
    customer: Customer,
    currency: str,
    invoice_id: str,
    drafts: list[FeeDraft],
    fee_ids: dict[str, str],
    totals_with: Callable[[dict[str, list[Tax]]], InvoiceTotals],
) -> _Taxed:
    """The invoice's totals, taxed by Stripe Tax (the connection's ``automatic_tax``) or
    by Billow's rates; also Billow's taxes by fee, Stripe's calculation, and the report
    of a Stripe Tax refusal (the invoice then falls back on Billow's rates)."""
    refusal: OutboxEvent | None = None
    stripe_tax = stripe_tax_service.tax_account(deps, customer, organization.billing_hints)
    if stripe_tax is not None:
        untaxed = totals_with({})
        try:
            calculation, service = stripe_tax_service.calculate(
                stripe_tax[1],
                customer,
                currency,
                invoice_id,
                {fee_ids[fee.key]: fee.taxable_amount_cents for fee in untaxed.fees},
            )
        except ProviderError as error:
            if error.retryable:
                raise
            refusal = stripe_tax_service.provider_error_event(customer, stripe_tax[0], error)
        else:
            by_fee = {key: service.fee_taxes.get(fee_id, 0) for key, fee_id in fee_ids.items()}
            taxed = with_service_taxes(untaxed, service.model_copy(update={"fee_taxes": by_fee}))
            return taxed, {}, calculation, None
    by_choices: dict[tuple[tuple[str, ...], ...], list[Tax]] = {}  # same choices: one read
    taxes: dict[str, list[Tax]] = {}
    for draft in drafts:
        choices = tuple(tuple(codes) for codes in draft.tax_code_choices)
        if choices not in by_choices:
            by_choices[choices] = taxes_for(
                deps, organization.id, customer, draft.tax_code_choices, organization.billing_hints
            )
        taxes[draft.key] = by_choices[choices]
    return totals_with(taxes), taxes, None, refusal


def issue_invoice(
    deps: Dependencies,
    organization: Organization,
    customer: Customer,
    *,
    invoice_id: str,
    invoice_type: InvoiceType,
    currency: str,
    drafts: list[FeeDraft],
    apply_coupons: bool,
    issued_at: datetime,
    payment_method: PaymentMethodChoice | None = None,
    skip_psp: bool = False,
    billing_period: tuple[str, str] | None = None,
    subscription_ids: list[str] | None = None,
    stage_more: Callable[[Transaction], list[OutboxEvent]] | None = None,
    read: AlreadyRead | None = None,
    refuse_uncollectable: bool = False,
    applied_usage_thresholds: list[dict[str, object]] | None = None,
) -> Invoice:
    """Issue one finalized invoice, or return the one already issued under ``invoice_id``.

    ``stage_more`` adds the writes that must happen with the invoice (a subscription moving
    to its next period); they and the invoice commit together or not at all.

    ``refuse_uncollectable`` is for invoices a client asks for and can be told no (one-off
    invoices): a total, taxes included, above what one Stripe charge can take is a 422 and
    nothing is written. It holds whatever the payment route (``skip_psp``, a manual
    payment method, a customer not yet in Stripe), since a later ``retry_payment`` or
    payment link would take the invoice to Stripe all the same. Invoices the billing run
    issues cannot be refused; one too large for Stripe fails its charge like any other.
    """
    # No read of ``invoice_id`` first: its write is conditional on the id being new, and a
    # repeat (a replayed request, a second worker) finds the first one when that fails.
    read = read or AlreadyRead()
    coupons = (
        (
            read.active_coupons
            if read.active_coupons is not None
            else deps.store.applied_coupons.list_active(organization.id, customer.lago_id)
        )
        if apply_coupons
        else []
    )

    def totals_with(rates: dict[str, list[Tax]]) -> InvoiceTotals:
        return compute_invoice(
            [
                FeeLine(
                    key=draft.key,
                    amount_cents=draft.amount_cents,
                    taxes=[
                        TaxRate(code=t.code, name=t.name, rate=t.rate)
                        for t in rates.get(draft.key, [])
                    ],
                    coupon_plan_code=draft.coupon_plan_code,
                )
                for draft in drafts
            ],
            [_coupon_state(coupon) for coupon in coupons],
        )

    fee_ids = {draft.key: stable_id("fee", invoice_id, draft.key) for draft in drafts}
    true_ups = {draft.true_up_of: fee_ids[draft.key] for draft in drafts if draft.true_up_of}
    totals, taxes, calculation, tax_refusal = _taxed(
        deps, organization, customer, currency, invoice_id, drafts, fee_ids, totals_with
    )
    if refuse_uncollectable and not stripe_can_charge(totals.total_amount_cents):
        raise ValidationFailed({"total_amount_cents": ["value_is_out_of_range"]})
    results = {result.key: result for result in totals.fees}
    by_code = {tax.code: tax for draft_taxes in taxes.values() for tax in draft_taxes}
    fees = [
        Fee(
            lago_id=fee_ids[draft.key],
            item=draft.item,
            amount_cents=draft.amount_cents,
            unit_amount_cents=draft.unit_amount_cents,
            units=draft.units,
            precise_coupons_amount_cents=results[draft.key].precise_coupons_amount_cents,
            taxes_amount_cents=results[draft.key].taxes_amount_cents,
            taxes_rate=str(results[draft.key].taxes_rate),
            total_amount_cents=results[draft.key].total_amount_cents,
            from_date=draft.from_date,
            to_date=draft.to_date,
            lago_subscription_id=draft.lago_subscription_id,
            external_subscription_id=draft.external_subscription_id,
            pay_in_advance=draft.pay_in_advance,
            description=draft.description,
            charge_id=draft.charge_id,
            charge_filter_id=draft.charge_filter_id,
            events_count=draft.events_count,
            total_aggregated_units=draft.total_aggregated_units,
            precise_amount=draft.precise_amount,
            amount_details=draft.amount_details,
            true_up_parent_fee_id=fee_ids.get(draft.true_up_of or ""),
            true_up_fee_id=true_ups.get(draft.key),
            applied_taxes=[
                _applied_tax(
                    by_code.get(tax.code),
                    tax.code,
                    tax.name,
                    tax.rate,
                    tax.amount_cents,
                    results[draft.key].taxable_amount_cents,
                )
                for tax in results[draft.key].applied_taxes
            ],
        )
        for draft in drafts
    ]
    by_id = {coupon.lago_id: coupon for coupon in coupons}
    issued_on = local_date(issued_at, customer.timezone or organization.timezone or "UTC")
    issuing_date = issued_on.isoformat()
    net_term = (
        customer.net_payment_term
        if customer.net_payment_term is not None
        else organization.net_payment_term
    )
    block = _payment_block(customer, payment_method, skip_psp)
    invoice = Invoice(
        lago_id=invoice_id,
        organization_id=organization.id,
        sequential_id=0,
        number=draft_number(organization.document_number_prefix),
        invoice_type=invoice_type,
        currency=currency,
        issuing_date=issuing_date,
        payment_due_date=(issued_on + timedelta(days=net_term)).isoformat(),
        net_payment_term=net_term,
        lago_customer_id=customer.lago_id,
        external_customer_id=customer.external_id,
        fees=fees,
        credits=[
            CouponCreditLine(
                lago_applied_coupon_id=credit.lago_id,
                coupon_code=by_id[credit.lago_id].coupon_code,
                coupon_name=by_id[credit.lago_id].coupon_name,
                amount_cents=credit.amount_cents,
            )
            for credit in totals.coupon_credits
            if credit.amount_cents > 0
        ],
        applied_taxes=[
            _applied_tax(
                by_code.get(tax.code),
                tax.code,
                tax.name,
                tax.rate,
                tax.amount_cents,
                tax.fees_amount_cents,
            )
            for tax in totals.applied_taxes
        ],
        fees_amount_cents=totals.fees_amount_cents,
        coupons_amount_cents=totals.coupons_amount_cents,
        taxes_amount_cents=totals.taxes_amount_cents,
        sub_total_excluding_taxes_amount_cents=totals.sub_total_excluding_taxes_amount_cents,
        sub_total_including_taxes_amount_cents=totals.sub_total_including_taxes_amount_cents,
        total_amount_cents=totals.total_amount_cents,
        subscription_ids=subscription_ids or [],
        billing_period=billing_period,
        payment_method=payment_method,
        skip_psp=skip_psp,
        payment_block=block,
        created_at=iso(issued_at),
        updated_at=iso(issued_at),
        stripe_tax=stripe_tax_service.link(calculation) if calculation else None,
        applied_usage_thresholds=applied_usage_thresholds or [],
    )
    if invoice.total_amount_cents == 0:
        invoice = invoice.model_copy(update={"payment_status": "succeeded", "payment_block": None})
    elif block is None:
        invoice = invoice.model_copy(update={"payment_attempts": 1})

    def stage_rest(transaction: Transaction) -> list[OutboxEvent]:
        for credit in totals.coupon_credits:
            coupon = by_id[credit.lago_id]
            if credit.amount_cents == 0 and not credit.terminated:
                continue
            deps.store.applied_coupons.stage(
                transaction,
                coupon.model_copy(
                    update={
                        "frequency_duration_remaining": credit.after.frequency_duration_remaining,
                        "amount_cents_remaining": credit.after.amount_cents_remaining,
                        "status": "terminated" if credit.terminated else coupon.status,
                        "terminated_at": iso(issued_at) if credit.terminated else None,
                        "version": coupon.version + 1,
                    }
                ),
                before=coupon,
            )
        events = stage_more(transaction) if stage_more else []
        if calculation is not None:
            events.append(stripe_tax_service.transaction_requested(organization.id, invoice_id))
        if tax_refusal is not None:
            events.append(tax_refusal)
        return events

    try:
        return commit_issued(deps, organization, invoice, customer, stage_rest, read.sequence)
    except ConcurrentUpdate:
        issued = deps.store.invoices.get(
            organization.id, invoice_id
        ) or deps.store.numbering.get_waiting(organization.id, invoice_id)
        if issued is None:
            raise  # what it was decided on changed: the caller reads again and decides again
        return issued
