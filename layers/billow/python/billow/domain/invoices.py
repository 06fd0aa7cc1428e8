"""Invoices, their fees, and the rules for how an invoice's payment status may move."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from billow.domain.clock import stable_id
from billow.domain.subscriptions import PaymentMethodChoice

InvoiceType = Literal["subscription", "one_off", "progressive_billing"]
InvoiceStatus = Literal["draft", "finalized", "voided"]
PaymentStatus = Literal["pending", "succeeded", "failed"]
PaymentBlock = Literal["no_payment_provider", "no_payment_method", "manual", "skip_psp"]


ITEM_TYPES = {"subscription": "Subscription", "add_on": "AddOn", "charge": "BillableMetric"}
"""Lago's ``item_type``: the kind of object ``lago_item_id`` names."""


class FeeItem(BaseModel):
    type: Literal["subscription", "add_on", "charge"]
    code: str
    name: str
    invoice_display_name: str | None = None
    lago_item_id: str
    """The subscription, the add-on, or (for a charge) the billable metric."""
    filter_invoice_display_name: str | None = None
    filters: dict[str, list[str]] | None = None
    """A charge filter's values: the fee prices only the events that hold them."""


class AppliedTax(BaseModel):
    lago_tax_id: str | None = None
    tax_code: str
    tax_name: str
    tax_rate: str
    amount_cents: int
    fees_amount_cents: int
    tax_description: str | None = None


class StripeTaxLink(BaseModel):
    """Stripe Tax computed the invoice's taxes: its calculation, and the tax transaction
    recorded from it once the invoice was final (Stripe Tax's reports then hold it)."""

    calculation_id: str
    transaction_id: str | None = None


class Fee(BaseModel):
    lago_id: str
    item: FeeItem
    amount_cents: int
    unit_amount_cents: int
    units: str = "1"
    precise_coupons_amount_cents: int = 0
    taxes_amount_cents: int = 0
    taxes_rate: str = "0"
    total_amount_cents: int = 0
    from_date: str | None = None
    to_date: str | None = None
    lago_subscription_id: str | None = None
    external_subscription_id: str | None = None
    pay_in_advance: bool = False
    description: str | None = None
    applied_taxes: list[AppliedTax] = Field(default_factory=list)
    charge_id: str | None = None
    charge_filter_id: str | None = None
    events_count: int | None = None
    total_aggregated_units: str | None = None
    """A charge's units before its filters split them (its own ``units`` otherwise)."""
    precise_amount: str | None = None
    """The amount in major units before rounding to the currency (charges)."""
    amount_details: dict[str, object] = Field(default_factory=dict)
    true_up_fee_id: str | None = None
    """The fee that tops this charge up to its minimum spend."""
    true_up_parent_fee_id: str | None = None
    """For a true-up fee: the charge fee it tops up."""


class CouponCreditLine(BaseModel):
    lago_applied_coupon_id: str
    coupon_code: str
    coupon_name: str
    amount_cents: int


class ProviderError(BaseModel):
    message: str
    error_code: str | None = None


class StripeInvoiceLink(BaseModel):
    """The Stripe invoice a mirrored invoice copies, and where its customer pays it."""

    id: str
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    status: str
    """Stripe's own status (``draft``, ``open``, ``paid``, ``void``, ``uncollectible``)."""
    attempt_count: int = 0
    """Stripe's payment attempts so far."""


class Invoice(BaseModel):
    lago_id: str
    organization_id: str
    sequential_id: int
    number: str
    invoice_type: InvoiceType
    status: InvoiceStatus = "finalized"
    payment_status: PaymentStatus = "pending"
    currency: str
    issuing_date: str
    payment_due_date: str
    net_payment_term: int = 0
    lago_customer_id: str
    external_customer_id: str
    fees: list[Fee]
    credits: list[CouponCreditLine] = Field(default_factory=list)
    applied_taxes: list[AppliedTax] = Field(default_factory=list)
    fees_amount_cents: int
    coupons_amount_cents: int = 0
    taxes_amount_cents: int = 0
    sub_total_excluding_taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    total_amount_cents: int
    total_paid_amount_cents: int = 0
    subscription_ids: list[str] = Field(default_factory=list)
    billing_period: tuple[str, str] | None = None
    payment_method: PaymentMethodChoice | None = None
    skip_psp: bool = False
    payment_attempts: int = 0
    """Charge attempts requested so far; attempt ``n`` uses idempotency key ``…-n``."""
    attempt_requested_at: str | None = None
    """When the current attempt was requested: how long Stripe has been silent about it."""
    payment_block: PaymentBlock | None = None
    """Why the current attempt could not reach Stripe (it stays ``pending``)."""
    last_payment_error: ProviderError | None = None
    provider_payment_id: str | None = None
    """The current attempt's PaymentIntent once Stripe named it (or the one that paid)."""
    payment_link_session_id: str | None = None
    """An open Stripe Checkout Session for this invoice (a payment link)."""
    created_at: str
    updated_at: str
    voided_at: str | None = None
    version: int = 0
    stripe_tax: StripeTaxLink | None = None
    applied_usage_thresholds: list[dict[str, object]] = Field(default_factory=list)
    """A progressive billing invoice: the threshold reached and the usage then (Lago's
    AppliedUsageThresholdObject)."""
    stripe_invoice: StripeInvoiceLink | None = None
    """Set on the read-only copy of an invoice Stripe Billing issued (a synced
    subscription's): Stripe charges it, Billow never does."""

    @property
    def total_due_amount_cents(self) -> int:
        return self.total_amount_cents - self.total_paid_amount_cents

    @property
    def is_voided(self) -> bool:
        return self.status == "voided"

    @property
    def is_payable(self) -> bool:
        """Finalized, unpaid and above zero: the only invoices anyone may charge (Billow
        charges its own; Stripe charges those it issued)."""
        return (
            self.stripe_invoice is None
            and self.status == "finalized"
            and self.payment_status != "succeeded"
            and self.total_due_amount_cents > 0
        )

    @property
    def payment_in_flight(self) -> bool:
        """An attempt was requested and its outcome is unknown. While it is, nothing else
        may start taking money for this invoice (no manual retry, no new payment link):
        the attempt may be charging the card at this very moment."""
        return (
            self.is_payable
            and self.payment_status == "pending"
            and self.payment_block is None
            and self.payment_attempts > 0
        )

    @property
    def in_flight_since(self) -> str:
        """When the attempt in flight was requested (invoices stored before Billow kept
        that time fall back to their last change)."""
        return self.attempt_requested_at or self.updated_at

    @property
    def self_billed(self) -> bool:
        """Billow never issues invoices on a partner's behalf (Lago's self-billing)."""
        return False

    def is_payment_overdue(self, today: date) -> bool:
        """Finalized, not paid, and due before ``today``."""
        return (
            self.status == "finalized"
            and self.payment_status != "succeeded"
            and date.fromisoformat(self.payment_due_date) < today
        )

    def as_lago(
        self, customer: dict[str, object] | None = None, *, today: date | None = None
    ) -> dict[str, object]:
        """Lago's InvoiceObject. ``payment_overdue`` is judged on ``today``; without it, on
        the day of the invoice's last change, which is what a webhook about that change
        reports."""
        judged_on = today or date.fromisoformat(self.updated_at[:10])
        body: dict[str, object] = {
            "lago_id": self.lago_id,
            "billing_entity_code": "default",
            "sequential_id": self.sequential_id,
            "number": self.number,
            "issuing_date": self.issuing_date,
            "payment_due_date": self.payment_due_date,
            "payment_overdue": self.is_payment_overdue(judged_on),
            "net_payment_term": self.net_payment_term,
            "invoice_type": self.invoice_type,
            "status": self.status,
            "payment_status": self.payment_status,
            "currency": self.currency,
            "fees_amount_cents": self.fees_amount_cents,
            "coupons_amount_cents": self.coupons_amount_cents,
            "credit_notes_amount_cents": 0,
            "progressive_billing_credit_amount_cents": 0,
            "sub_total_excluding_taxes_amount_cents": self.sub_total_excluding_taxes_amount_cents,
            "taxes_amount_cents": self.taxes_amount_cents,
            "sub_total_including_taxes_amount_cents": self.sub_total_including_taxes_amount_cents,
            "prepaid_credit_amount_cents": 0,
            "total_amount_cents": self.total_amount_cents,
            "total_paid_amount_cents": self.total_paid_amount_cents,
            "total_due_amount_cents": self.total_due_amount_cents,
            "version_number": 4,
            "self_billed": self.self_billed,
            "file_url": None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "voided_at": self.voided_at,
            "metadata": [],
            "applied_taxes": [
                {
                    "lago_invoice_id": self.lago_id,
                    "fees_amount_cents": tax.fees_amount_cents,
                    **self._tax_as_lago(tax, self.lago_id),
                }
                for tax in self.applied_taxes
            ],
            "applied_invoice_custom_sections": [],
            "applied_usage_thresholds": self.applied_usage_thresholds,
            "fees": [self._fee_as_lago(fee) for fee in self.fees],
            "credits": [self._credit_as_lago(credit) for credit in self.credits],
            "subscriptions": [],
            "billing_periods": [],
            "stripe_invoice": self.stripe_invoice.model_dump() if self.stripe_invoice else None,
            "stripe_tax": self.stripe_tax.model_dump() if self.stripe_tax else None,
        }
        if customer is not None:
            body["customer"] = customer
        return body

    def _fee_as_lago(self, fee: Fee) -> dict[str, object]:
        return {
            "lago_id": fee.lago_id,
            "lago_charge_id": fee.charge_id,
            "lago_charge_filter_id": fee.charge_filter_id,
            "lago_invoice_id": self.lago_id,
            "lago_true_up_fee_id": fee.true_up_fee_id,
            "lago_true_up_parent_fee_id": fee.true_up_parent_fee_id,
            "lago_subscription_id": fee.lago_subscription_id,
            "lago_customer_id": self.lago_customer_id,
            "external_customer_id": self.external_customer_id,
            "external_subscription_id": fee.external_subscription_id,
            "amount_cents": fee.amount_cents,
            "precise_amount": fee.precise_amount or str(fee.amount_cents),
            "amount_currency": self.currency,
            "taxes_amount_cents": fee.taxes_amount_cents,
            "taxes_rate": float(fee.taxes_rate),
            "units": fee.units,
            "precise_unit_amount": str(fee.unit_amount_cents),
            "total_aggregated_units": fee.total_aggregated_units or fee.units,
            "total_amount_cents": fee.total_amount_cents,
            "total_amount_currency": self.currency,
            "events_count": fee.events_count,
            "amount_details": fee.amount_details,
            "pay_in_advance": fee.pay_in_advance,
            "invoiceable": True,
            "from_date": fee.from_date,
            "to_date": fee.to_date,
            "payment_status": self.payment_status,
            "created_at": self.created_at,
            "succeeded_at": None,
            "failed_at": None,
            "refunded_at": None,
            "description": fee.description,
            "precise_coupons_amount_cents": str(fee.precise_coupons_amount_cents),
            "sub_total_excluding_taxes_amount_cents": (
                fee.amount_cents - fee.precise_coupons_amount_cents
            ),
            "sub_total_excluding_taxes_precise_amount_cents": str(
                fee.amount_cents - fee.precise_coupons_amount_cents
            ),
            "self_billed": self.self_billed,
            "item": {
                "type": fee.item.type,
                "code": fee.item.code,
                "name": fee.item.name,
                "invoice_display_name": fee.item.invoice_display_name or fee.item.name,
                "lago_item_id": fee.item.lago_item_id,
                "item_type": ITEM_TYPES[fee.item.type],
                "filter_invoice_display_name": fee.item.filter_invoice_display_name,
                "filters": fee.item.filters,
            },
            "applied_taxes": [
                {"lago_fee_id": fee.lago_id, **self._tax_as_lago(tax, fee.lago_id)}
                for tax in fee.applied_taxes
            ],
        }

    def _tax_as_lago(self, tax: AppliedTax, applied_to: str) -> dict[str, object]:
        """Lago's BaseAppliedTax: the rate is a number, and each application has its id."""
        return {
            "lago_id": stable_id("applied-tax", applied_to, tax.tax_code),
            "lago_tax_id": tax.lago_tax_id,
            "tax_name": tax.tax_name,
            "tax_code": tax.tax_code,
            "tax_rate": float(tax.tax_rate),
            "tax_description": tax.tax_description,
            "amount_cents": tax.amount_cents,
            "amount_currency": self.currency,
            "created_at": self.created_at,
        }

    def _credit_as_lago(self, credit: CouponCreditLine) -> dict[str, object]:
        return {
            "lago_id": credit.lago_applied_coupon_id,
            "amount_cents": credit.amount_cents,
            "amount_currency": self.currency,
            "before_taxes": True,
            "item": {
                "lago_item_id": credit.lago_applied_coupon_id,
                "type": "coupon",
                "code": credit.coupon_code,
                "name": credit.coupon_name,
            },
            "invoice": {"lago_id": self.lago_id, "payment_status": self.payment_status},
        }


def draft_number(prefix: str) -> str:
    """Lago's number for an invoice that has none yet (``PREFIX-DRAFT``)."""
    return f"{prefix}-DRAFT"


def invoice_number(prefix: str, issuing_date: str, sequence: int) -> str:
    """Lago's per-organization numbering: ``PREFIX-YYYYMM-001``, never reset."""
    return f"{prefix}-{issuing_date[:7].replace('-', '')}-{sequence:03d}"


def failure_applies(invoice: Invoice, attempt: int | None) -> bool:
    """A failure counts only for the attempt in flight, and never undoes a payment."""
    return invoice.payment_status == "pending" and (
        attempt is None or attempt == invoice.payment_attempts
    )
