"""What an organization sells: taxes, plans, add-ons, coupons and the coupons granted to
customers (Lago's catalog). Money is integer minor units; rates are Decimal, never float."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from billow.domain.clock import iso
from billow.domain.identifiers import not_blank
from billow.domain.usage import Charge, UsageThreshold

# -- input building blocks (codes are identifiers, amounts money: see those modules) ----

Name = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(not_blank)]
Text = Annotated[str, Field(max_length=1000)]
FrequencyDuration = Annotated[int, Field(ge=1, le=1200)]
"""How many periods a recurring coupon applies for, within Lago's bounds."""


def _decimal(value: object) -> Decimal:
    """A JSON number or numeric string as an exact Decimal without exponent notation.

    Lago documents rates as strings but its clients also send numbers; floats are read
    through their shortest repr, so 19.6 stays 19.6."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("invalid_type")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError("value_is_invalid") from None
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int) or exponent < -15:
        raise ValueError("value_is_invalid")
    if number.adjusted() > 15:
        raise ValueError("value_is_out_of_range")
    return Decimal(format(number, "f")) if number else Decimal(0)


def _percentage(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError("value_is_out_of_range")
    return value


Number = Annotated[Decimal, BeforeValidator(_decimal)]
Percentage = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_percentage)]


def plain(number: Decimal) -> str:
    """Lago's decimal strings: plain digits, never ``1E+1``."""
    return format(number, "f")


def parse_moment(value: str) -> str:
    """An ISO 8601 date-time as Lago's UTC timestamp; a time without offset is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("invalid_date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)


# -- taxes -----------------------------------------------------------------------------


class TaxCounts(BaseModel):
    """How many catalog objects and customers carry a tax (Lago's TaxObject counts)."""

    add_ons_count: int = 0
    customers_count: int = 0
    plans_count: int = 0
    charges_count: int = 0
    """Billow has no usage charges, so this is always 0 and always right."""


class Tax(BaseModel):
    lago_id: str
    organization_id: str
    code: str
    name: str
    rate: Decimal
    """Percentage, e.g. 20 for 20 %."""
    description: str | None = None
    applied_to_organization: bool = False
    """Applies to every customer that has no tax codes of its own."""
    created_at: str
    version: int = 0
    """Optimistic-locking counter; every write expects the version it read."""

    def as_lago(self, counts: TaxCounts | None = None) -> dict[str, object]:
        """Lago's TaxObject. Counts cost a Query, so only the /taxes routes include them."""
        body: dict[str, object] = {
            "lago_id": self.lago_id,
            "name": self.name,
            "code": self.code,
            "rate": float(self.rate),
            "description": self.description,
            "applied_to_organization": self.applied_to_organization,
            "created_at": self.created_at,
        }
        if counts is not None:
            body.update(counts.model_dump())
        return body


# -- plans and add-ons -----------------------------------------------------------------

Interval = Literal["weekly", "monthly", "quarterly", "yearly"]


class Plan(BaseModel):
    lago_id: str
    organization_id: str
    code: str
    name: str
    invoice_display_name: str | None = None
    description: str | None = None
    interval: Interval
    amount_cents: int
    amount_currency: str
    trial_period: Decimal = Decimal(0)
    """Days."""
    pay_in_advance: bool = False
    tax_codes: list[str] = Field(default_factory=list)
    charges: list[Charge] = Field(default_factory=list)
    """Usage charges, billed in arrears at the end of each period."""
    usage_thresholds: list[UsageThreshold] = Field(default_factory=list)
    """Progressive billing: usage invoiced within the period as it reaches these."""
    created_at: str
    deleted_at: str | None = None
    """Deleted plans stay readable by id: subscriptions and invoices keep pointing at them."""
    version: int = 0

    def as_lago(
        self,
        taxes: Sequence[Tax],
        *,
        active_subscriptions_count: int,
        draft_invoices_count: int,
        charge_taxes: Mapping[str, Tax] | None = None,
    ) -> dict[str, object]:
        """Lago's PlanObject; Billow plans have no commitments or fixed charges.
        ``charge_taxes`` holds (at least) the taxes the charges name, by code."""
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "invoice_display_name": self.invoice_display_name,
            "created_at": self.created_at,
            "code": self.code,
            "interval": self.interval,
            "description": self.description,
            "amount_cents": self.amount_cents,
            "amount_currency": self.amount_currency,
            "trial_period": float(self.trial_period),
            "pay_in_advance": self.pay_in_advance,
            "bill_charges_monthly": None,
            "bill_fixed_charges_monthly": None,
            "active_subscriptions_count": active_subscriptions_count,
            "draft_invoices_count": draft_invoices_count,
            "minimum_commitment": None,
            "charges": [
                charge.as_lago(
                    [
                        (charge_taxes or {})[code]
                        for code in charge.tax_codes
                        if code in (charge_taxes or {})
                    ]
                )
                for charge in self.charges
            ],
            "fixed_charges": [],
            "usage_thresholds": [threshold.as_lago() for threshold in self.usage_thresholds],
            "taxes": [tax.as_lago() for tax in taxes],
        }


class AddOn(BaseModel):
    lago_id: str
    organization_id: str
    code: str
    name: str
    invoice_display_name: str | None = None
    description: str | None = None
    amount_cents: int
    amount_currency: str
    tax_codes: list[str] = Field(default_factory=list)
    created_at: str
    version: int = 0

    def as_lago(self, taxes: Sequence[Tax]) -> dict[str, object]:
        """Lago's AddOnObject."""
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "invoice_display_name": self.invoice_display_name,
            "code": self.code,
            "amount_cents": self.amount_cents,
            "amount_currency": self.amount_currency,
            "description": self.description,
            "created_at": self.created_at,
            "taxes": [tax.as_lago() for tax in taxes],
        }


# -- coupons ---------------------------------------------------------------------------

CouponType = Literal["fixed_amount", "percentage"]
Frequency = Literal["once", "recurring", "forever"]
Expiration = Literal["no_expiration", "time_limit"]

COUPON_TERMS: frozenset[str] = frozenset(
    {
        "coupon_type",
        "amount_cents",
        "amount_currency",
        "percentage_rate",
        "frequency",
        "frequency_duration",
        "reusable",
        "plan_codes",
    }
)
"""What a coupon promises; frozen once it has been applied to a customer (as in Lago)."""


class Coupon(BaseModel):
    lago_id: str
    organization_id: str
    code: str
    name: str
    description: str | None = None
    coupon_type: CouponType
    amount_cents: int | None = None
    amount_currency: str | None = None
    percentage_rate: Decimal | None = None
    frequency: Frequency
    frequency_duration: int | None = None
    reusable: bool = True
    expiration: Expiration = "no_expiration"
    expiration_at: str | None = None
    plan_codes: list[str] = Field(default_factory=list)
    """Plans the coupon is limited to; empty means every plan."""
    created_at: str
    terminated_at: str | None = None
    deleted_at: str | None = None
    """Deleted coupons stay readable by id: customers keep the coupons already granted."""
    version: int = 0
    applied_count: int = 0
    """How many times it was granted to a customer (kept outside the JSON document)."""

    def ended_at(self, now: str) -> str | None:
        """When the coupon stopped being grantable: terminated, or past its expiration."""
        if self.terminated_at:
            return self.terminated_at
        if self.expiration == "time_limit" and self.expiration_at and self.expiration_at <= now:
            return self.expiration_at
        return None

    def as_lago(self, now: str) -> dict[str, object]:
        """Lago's CouponObject."""
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "code": self.code,
            "description": self.description,
            "coupon_type": self.coupon_type,
            "amount_cents": self.amount_cents,
            "amount_currency": self.amount_currency,
            "reusable": self.reusable,
            "limited_plans": bool(self.plan_codes),
            "plan_codes": self.plan_codes,
            "limited_billable_metrics": False,
            "billable_metric_codes": [],
            "percentage_rate": plain(self.percentage_rate)
            if self.percentage_rate is not None
            else None,
            "frequency": self.frequency,
            "frequency_duration": self.frequency_duration,
            "expiration": self.expiration,
            "expiration_at": self.expiration_at,
            "created_at": self.created_at,
            "terminated_at": self.ended_at(now),
        }


class AppliedCoupon(BaseModel):
    """A coupon granted to a customer, with its own (possibly overridden) terms and what
    is left of it; the billing engine consumes it."""

    lago_id: str
    organization_id: str
    lago_coupon_id: str
    coupon_code: str
    coupon_name: str
    lago_customer_id: str
    external_customer_id: str
    status: Literal["active", "terminated"] = "active"
    coupon_type: CouponType
    amount_cents: int | None = None
    amount_currency: str | None = None
    percentage_rate: Decimal | None = None
    frequency: Frequency
    frequency_duration: int | None = None
    frequency_duration_remaining: int | None = None
    """Billing periods left for a recurring coupon."""
    amount_cents_remaining: int | None = None
    """What is left of a fixed-amount ``once`` coupon; the remainder carries over."""
    plan_codes: list[str] = Field(default_factory=list)
    created_at: str
    applied_at: str = ""
    """``created_at`` to the microsecond: coupons granted in the same second keep their order."""
    terminated_at: str | None = None
    version: int = 0
    """Optimistic-locking counter; every write expects the version it read."""

    def overlaps(self, plan_codes: Iterable[str]) -> bool:
        return bool(set(self.plan_codes) & set(plan_codes))

    def as_lago(
        self, coupon: Coupon, now: str, credits: Sequence[dict[str, object]] = ()
    ) -> dict[str, object]:
        """Lago's AppliedCouponObjectExtended; ``credits`` are the invoice credits it gave,
        which invoices record (none until an invoice consumed it)."""
        return {
            "lago_id": self.lago_id,
            "lago_coupon_id": self.lago_coupon_id,
            "coupon_code": coupon.code,
            "coupon_name": coupon.name,
            "coupon_status": "terminated" if coupon.ended_at(now) else "active",
            "coupon_deleted_at": coupon.deleted_at,
            "lago_customer_id": self.lago_customer_id,
            "external_customer_id": self.external_customer_id,
            "status": self.status,
            "amount_cents": self.amount_cents,
            "amount_cents_remaining": self.amount_cents_remaining,
            "amount_currency": self.amount_currency,
            "percentage_rate": plain(self.percentage_rate)
            if self.percentage_rate is not None
            else None,
            "frequency": self.frequency,
            "frequency_duration": self.frequency_duration,
            "frequency_duration_remaining": self.frequency_duration_remaining,
            "expiration_at": coupon.expiration_at,
            "created_at": self.created_at,
            "terminated_at": self.terminated_at,
            "credits": list(credits),
        }


def application_order(applied: Iterable[AppliedCoupon]) -> list[AppliedCoupon]:
    """Lago's order of use: plan-limited coupons first, then unlimited; oldest first."""
    return sorted(
        applied,
        key=lambda coupon: (
            not coupon.plan_codes,
            coupon.applied_at or coupon.created_at,
            coupon.lago_id,
        ),
    )
