"""Lago's invoice objects as served: invoices, their fees, taxes and credits, and payment
links."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from billow.api.responses.catalog import UsageThresholdObject
from billow.api.responses.common import Day, LagoObject, NoItems, PaginationMeta, Timestamp
from billow.api.responses.customers import CustomerObject
from billow.domain.invoices import InvoiceStatus, InvoiceType, PaymentStatus


class InvoiceAppliedTax(LagoObject):
    """A tax applied to the whole invoice."""

    lago_invoice_id: str
    fees_amount_cents: int
    """The part of the invoice the tax applies to."""
    lago_id: str
    lago_tax_id: str | None
    tax_name: str
    tax_code: str
    tax_rate: float
    tax_description: str | None
    amount_cents: int
    amount_currency: str
    created_at: Timestamp


class FeeAppliedTax(LagoObject):
    """A tax applied to one fee (the same fields as on the invoice, for one fee)."""

    lago_fee_id: str
    lago_id: str
    lago_tax_id: str | None
    tax_name: str
    tax_code: str
    tax_rate: float
    tax_description: str | None
    amount_cents: int
    amount_currency: str
    created_at: Timestamp


class AppliedUsageThreshold(LagoObject):
    """The progressive billing threshold a ``progressive_billing`` invoice was issued at."""

    lifetime_usage_amount_cents: int
    created_at: Timestamp
    usage_threshold: UsageThresholdObject


class FeeItem(LagoObject):
    type: Literal["subscription", "add_on", "charge"]
    code: str
    name: str
    invoice_display_name: str
    lago_item_id: str
    """The subscription, the add-on, or (for a charge) the billable metric."""
    item_type: Literal["Subscription", "AddOn", "BillableMetric"]
    filter_invoice_display_name: str | None
    filters: dict[str, list[str]] | None


class FeeObject(LagoObject):
    """One line of an invoice: a subscription period, an add-on, or a usage charge (and
    its minimum-spend true-up). Billow has no per-fee payments, so those stay null."""

    lago_id: str
    lago_charge_id: str | None
    lago_charge_filter_id: str | None
    lago_invoice_id: str
    lago_true_up_fee_id: str | None
    lago_true_up_parent_fee_id: str | None
    lago_subscription_id: str | None
    lago_customer_id: str
    external_customer_id: str
    external_subscription_id: str | None
    amount_cents: int
    precise_amount: str
    amount_currency: str
    taxes_amount_cents: int
    taxes_rate: float
    units: str
    precise_unit_amount: str
    total_aggregated_units: str
    total_amount_cents: int
    total_amount_currency: str
    events_count: int | None
    amount_details: dict[str, Any]
    """Lago's FeeAmountDetails: how a charge's amount was reached (tiers, packages…)."""
    pay_in_advance: bool
    invoiceable: bool
    from_date: Timestamp | None
    to_date: Timestamp | None
    payment_status: PaymentStatus
    created_at: Timestamp
    succeeded_at: None
    failed_at: None
    refunded_at: None
    description: str | None
    precise_coupons_amount_cents: str
    sub_total_excluding_taxes_amount_cents: int
    sub_total_excluding_taxes_precise_amount_cents: str
    self_billed: bool
    item: FeeItem
    applied_taxes: list[FeeAppliedTax]


class CreditItem(LagoObject):
    lago_item_id: str
    type: Literal["coupon"]
    code: str
    name: str


class CreditInvoice(LagoObject):
    lago_id: str
    payment_status: PaymentStatus


class CreditObject(LagoObject):
    """What a coupon took off the invoice."""

    lago_id: str
    amount_cents: int
    amount_currency: str
    before_taxes: bool
    item: CreditItem
    invoice: CreditInvoice


class StripeInvoiceObject(LagoObject):
    """Billow's addition: the Stripe Billing invoice this one copies (synced
    subscriptions); Stripe charges it, and its customer pays it at the hosted page."""

    id: str
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    status: str
    attempt_count: int


class StripeTaxObject(LagoObject):
    """Billow's addition: Stripe Tax computed the taxes (``automatic_tax``)."""

    calculation_id: str
    transaction_id: str | None
    """The tax transaction recorded in Stripe Tax once the invoice was final."""


class InvoiceObject(LagoObject):
    lago_id: str
    billing_entity_code: str
    sequential_id: int
    number: str
    issuing_date: Day
    payment_due_date: Day
    payment_overdue: bool
    net_payment_term: int
    invoice_type: InvoiceType
    status: InvoiceStatus
    payment_status: PaymentStatus
    currency: str
    fees_amount_cents: int
    coupons_amount_cents: int
    credit_notes_amount_cents: int
    progressive_billing_credit_amount_cents: int
    sub_total_excluding_taxes_amount_cents: int
    taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    prepaid_credit_amount_cents: int
    total_amount_cents: int
    total_paid_amount_cents: int
    total_due_amount_cents: int
    version_number: int
    self_billed: bool
    file_url: None
    """Billow renders no PDF."""
    created_at: Timestamp
    updated_at: Timestamp
    voided_at: Timestamp | None
    metadata: NoItems
    applied_taxes: list[InvoiceAppliedTax]
    applied_invoice_custom_sections: NoItems
    applied_usage_thresholds: list[AppliedUsageThreshold]
    fees: list[FeeObject]
    credits: list[CreditObject]
    subscriptions: NoItems
    billing_periods: NoItems
    stripe_invoice: StripeInvoiceObject | None
    """Only on invoices Stripe Billing issued for a synced subscription."""
    stripe_tax: StripeTaxObject | None
    customer: CustomerObject | None = Field(default=None, exclude_if=lambda value: value is None)
    """Left out only when the customer has since been deleted."""


class PaymentUrlObject(LagoObject):
    """A Stripe Checkout page where the customer pays the invoice."""

    lago_customer_id: str
    lago_invoice_id: str
    external_customer_id: str
    payment_provider: Literal["stripe"]
    payment_url: str


class InvoiceResponse(LagoObject):
    invoice: InvoiceObject


class InvoicesPage(LagoObject):
    invoices: list[InvoiceObject]
    meta: PaginationMeta


class PaymentUrlResponse(LagoObject):
    invoice_payment_details: PaymentUrlObject
