"""Lago's catalog objects as served: taxes, plans, add-ons, coupons, applied coupons."""

from __future__ import annotations

from typing import Any, Literal

from billow.api.responses.common import (
    LagoObject,
    NoItems,
    PaginationMeta,
    StripeSyncObject,
    Timestamp,
)
from billow.domain.catalog import CouponType, Expiration, Frequency, Interval
from billow.domain.usage import ChargeModelName


class TaxObject(LagoObject):
    """A tax as embedded in customers, plans, add-ons and the organization."""

    lago_id: str
    name: str
    code: str
    rate: float
    """Percentage: 20.0 is 20 %."""
    description: str | None
    applied_to_organization: bool
    created_at: Timestamp


class TaxWithCounts(TaxObject):
    """A tax as the /taxes routes serve it, with how many objects carry it."""

    add_ons_count: int
    customers_count: int
    plans_count: int
    charges_count: int


class ChargeFilterObject(LagoObject):
    invoice_display_name: str | None
    properties: dict[str, Any]
    values: dict[str, list[str]]


class ChargeObject(LagoObject):
    """One of a plan's usage charges (``properties`` as Lago's ChargeProperties)."""

    lago_id: str
    lago_billable_metric_id: str
    billable_metric_code: str
    code: str | None
    invoice_display_name: str | None
    created_at: Timestamp
    charge_model: ChargeModelName
    pay_in_advance: bool
    invoiceable: bool
    regroup_paid_fees: None
    prorated: bool
    min_amount_cents: int
    properties: dict[str, Any]
    filters: list[ChargeFilterObject]
    taxes: list[TaxObject]


class UsageThresholdObject(LagoObject):
    lago_id: str
    threshold_display_name: str | None
    amount_cents: int
    recurring: bool
    created_at: Timestamp
    updated_at: Timestamp


class PlanObject(LagoObject):
    """A plan: a subscription fee per interval, usage charges and progressive billing's
    thresholds (Billow has no commitments or fixed charges: always null or empty)."""

    lago_id: str
    name: str
    invoice_display_name: str | None
    created_at: Timestamp
    code: str
    interval: Interval
    description: str | None
    amount_cents: int
    amount_currency: str
    trial_period: float
    """Days."""
    pay_in_advance: bool
    bill_charges_monthly: None
    bill_fixed_charges_monthly: None
    active_subscriptions_count: int
    draft_invoices_count: int
    minimum_commitment: None
    charges: list[ChargeObject]
    fixed_charges: NoItems
    usage_thresholds: list[UsageThresholdObject]
    taxes: list[TaxObject]
    stripe_sync: StripeSyncObject


class AddOnObject(LagoObject):
    lago_id: str
    name: str
    invoice_display_name: str | None
    code: str
    amount_cents: int
    amount_currency: str
    description: str | None
    created_at: Timestamp
    taxes: list[TaxObject]
    stripe_sync: StripeSyncObject


class CouponObject(LagoObject):
    lago_id: str
    name: str
    code: str
    description: str | None
    coupon_type: CouponType
    amount_cents: int | None
    amount_currency: str | None
    reusable: bool
    limited_plans: bool
    plan_codes: list[str]
    limited_billable_metrics: bool
    billable_metric_codes: NoItems
    percentage_rate: str | None
    """A decimal string, e.g. ``"12.5"``, for percentage coupons."""
    frequency: Frequency
    frequency_duration: int | None
    expiration: Expiration
    expiration_at: Timestamp | None
    created_at: Timestamp
    terminated_at: Timestamp | None
    """When it was terminated or expired."""
    stripe_sync: StripeSyncObject


class AppliedCouponObject(LagoObject):
    """A coupon granted to a customer, with its own terms and what is left of it."""

    lago_id: str
    lago_coupon_id: str
    coupon_code: str
    coupon_name: str
    coupon_status: Literal["active", "terminated"]
    coupon_deleted_at: Timestamp | None
    lago_customer_id: str
    external_customer_id: str
    status: Literal["active", "terminated"]
    amount_cents: int | None
    amount_cents_remaining: int | None
    amount_currency: str | None
    percentage_rate: str | None
    frequency: Frequency
    frequency_duration: int | None
    frequency_duration_remaining: int | None
    expiration_at: Timestamp | None
    created_at: Timestamp
    terminated_at: Timestamp | None
    credits: NoItems
    """The invoice credits it gave are listed on the invoices, not here."""


class TaxResponse(LagoObject):
    tax: TaxWithCounts


class TaxesPage(LagoObject):
    taxes: list[TaxWithCounts]
    meta: PaginationMeta


class ChargeResponse(LagoObject):
    charge: ChargeObject


class ChargesPage(LagoObject):
    charges: list[ChargeObject]
    meta: PaginationMeta


class PlanResponse(LagoObject):
    plan: PlanObject


class PlansPage(LagoObject):
    plans: list[PlanObject]
    meta: PaginationMeta


class AddOnResponse(LagoObject):
    add_on: AddOnObject


class AddOnsPage(LagoObject):
    add_ons: list[AddOnObject]
    meta: PaginationMeta


class CouponResponse(LagoObject):
    coupon: CouponObject


class CouponsPage(LagoObject):
    coupons: list[CouponObject]
    meta: PaginationMeta


class AppliedCouponResponse(LagoObject):
    applied_coupon: AppliedCouponObject


class AppliedCouponsPage(LagoObject):
    applied_coupons: list[AppliedCouponObject]
    meta: PaginationMeta
