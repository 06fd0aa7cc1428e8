"""Billow's catalog mirrored in Stripe Billing (seed 004): what each object becomes there,
and the sync state Billow keeps for it.

Plans and add-ons become Products with one active Price each; coupons become Stripe
Coupons. Stripe Prices and Coupons cannot change their amounts, so a change of terms
makes a new one and retires the old (``price_terms``/``coupon_terms`` say when). Each
mirrored object has one sync state; a missing state means the object was written while
no connection synced the catalog.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from billow.domain.catalog import AddOn, Coupon, Interval, Plan

SyncedType = Literal["plan", "add_on", "coupon", "subscription"]
DashboardObject = Literal["plan", "add_on", "coupon", "subscription", "customer"]
SyncStatus = Literal["pending", "succeeded", "failed", "not_required"]

CATALOG_SYNC_OFF = "catalog_sync_disabled"
"""``not_required`` reason: written while no Stripe connection synced the catalog."""
# Seed 004's rules for subscriptions Billow keeps billing itself, as ``reason``:
SUBSCRIPTION_SYNC_OFF = "subscription_sync_disabled"
FREE_PLAN = "free_plan"
IN_TRIAL = "trial"
CUSTOMER_NOT_IN_STRIPE = "customer_not_in_stripe"
USAGE_CHARGES = "usage_sync_refused"
"""The plan charges for usage and the connection no longer adds usage to Stripe's
invoices (its account finalizes them too soon): Billow bills such plans itself."""
MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER = 500
"""Stripe's ceiling on a customer's active subscriptions."""
USAGE_WITHIN_PERIOD = "usage_invoiced_within_period"
"""The plan invoices usage within the period (pay-in-advance charges, progressive
billing), which Stripe's period invoices cannot: Billow bills it."""
HANDOVER_NEXT_PERIOD = "sync_starts_next_period"
"""Billow billed it before sync was turned on; Stripe takes over at its next period."""
NO_STRIPE_PROVIDER = "payment_provider_not_stripe"
"""A customer billed without Stripe (no provider, or manual payments)."""
STRIPE_REFUSED = "stripe_refused"
"""Stripe would not make it: Billow bills it, and its state keeps Stripe's error."""

RECURRING: dict[Interval, tuple[str, int]] = {
    "weekly": ("week", 1),
    "monthly": ("month", 1),
    "quarterly": ("month", 3),
    "yearly": ("year", 1),
}
"""A plan's interval as Stripe's ``recurring[interval]`` and ``recurring[interval_count]``."""

_DASHBOARD_PATHS: dict[DashboardObject, str] = {
    "customer": "customers",
    "plan": "products",
    "add_on": "products",
    "coupon": "coupons",
    "subscription": "subscriptions",
}


class SyncError(BaseModel):
    code: str
    message: str


class StripeSyncState(BaseModel):
    """Where one catalog object stands in Stripe.

    ``requested_version`` is the object's version the last Billow write asked to mirror;
    ``synced_version`` the one Stripe holds. ``revision`` is bumped by every write of the
    state, so a sync that read it before an edit cannot record itself as current."""

    organization_id: str
    object_type: SyncedType
    lago_id: str
    code: str = ""
    """The object's code when last asked for (add-ons are found by code)."""
    status: SyncStatus = "pending"
    requested_version: int = 0
    synced_version: int | None = None
    retired: bool = False
    """Its mirror was archived (Products, Prices) or deleted (Coupons) in Stripe."""
    stripe_id: str | None = None
    """The Product (plans, add-ons) or Coupon in Stripe."""
    stripe_name: str | None = None
    price_id: str | None = None
    price_terms: str | None = None
    priced_plan: str | None = None
    """A subscription's: the Billow plan whose Price its Stripe twin carries. A new Price
    of the same plan applies from the next period; another plan's at once, prorated."""
    coupon_terms: str | None = None
    charge_products: dict[str, str] = Field(default_factory=dict)
    """A plan's: the Stripe Product of each usage charge (by charge id), which the usage
    Billow adds to Stripe's invoices is a line of."""
    stripe_url: str | None = None
    error: SyncError | None = None
    synced_at: str | None = None
    revision: int = 0

    def as_lago(self) -> dict[str, object]:
        return sync_view(
            self.status,
            stripe_id=self.stripe_id,
            stripe_url=self.stripe_url,
            error=self.error,
            synced_at=self.synced_at,
        )


def sync_view(
    status: SyncStatus,
    *,
    stripe_id: str | None = None,
    stripe_url: str | None = None,
    reason: str | None = None,
    error: SyncError | None = None,
    synced_at: str | None = None,
) -> dict[str, object]:
    """``stripe_sync`` as served on plans, add-ons, coupons, customers and subscriptions."""
    return {
        "status": status,
        "stripe_id": stripe_id,
        "stripe_url": stripe_url,
        "reason": reason,
        "error": error.model_dump() if error else None,
        "synced_at": synced_at,
    }


def not_synced(reason: str = CATALOG_SYNC_OFF) -> dict[str, object]:
    """``stripe_sync`` of an object Billow does not mirror, with the rule that applied."""
    return sync_view("not_required", reason=reason)


def pending() -> dict[str, object]:
    """``stripe_sync`` of an object just handed to the sync, before its state is read."""
    return sync_view("pending")


def dashboard_url(object_type: DashboardObject, stripe_id: str, livemode: bool) -> str:
    """The object in Stripe's dashboard; test-mode objects live under ``/test``."""
    mode = "" if livemode else "test/"
    return f"https://dashboard.stripe.com/{mode}{_DASHBOARD_PATHS[object_type]}/{stripe_id}"


def product_name(item: Plan | AddOn) -> str:
    """Seed 004's names: "Pro Plan", "10 Seats Add-on"."""
    return f"{item.name} Plan" if isinstance(item, Plan) else f"{item.name} Add-on"


def recurring(plan: Plan) -> tuple[str, int]:
    return RECURRING[plan.interval]


def price_terms(item: Plan | AddOn) -> str:
    """What a Price cannot change: amount, currency and, for a plan, its interval."""
    parts = [str(item.amount_cents), item.amount_currency.lower()]
    if isinstance(item, Plan):
        interval, count = recurring(item)
        parts += [interval, str(count)]
    return ":".join(parts)


def stripe_coupon_duration(coupon: Coupon) -> tuple[str, int | None]:
    """Lago's frequency as Stripe's ``duration``. A recurring coupon lasts its number of
    billing periods in Billow and as many months in Stripe (Stripe counts in months)."""
    if coupon.frequency == "once":
        return "once", None
    if coupon.frequency == "forever":
        return "forever", None
    return "repeating", coupon.frequency_duration or 1


def coupon_params(coupon: Coupon) -> dict[str, object]:
    """The Stripe Coupon's immutable terms (its name and metadata can change)."""
    duration, months = stripe_coupon_duration(coupon)
    params: dict[str, object] = {"duration": duration}
    if months is not None:
        params["duration_in_months"] = months
    if coupon.coupon_type == "fixed_amount":
        params["amount_off"] = coupon.amount_cents or 0
        params["currency"] = (coupon.amount_currency or "").lower()
    else:
        # Stripe takes at most two decimal places.
        rate = (coupon.percentage_rate or Decimal(0)).quantize(Decimal("0.01"))
        params["percent_off"] = float(rate)
    if coupon.expiration == "time_limit" and coupon.expiration_at:
        params["redeem_by"] = int(datetime.fromisoformat(coupon.expiration_at).timestamp())
    return params


def coupon_terms(coupon: Coupon) -> str:
    params = coupon_params(coupon)
    return ";".join(f"{name}={params[name]}" for name in sorted(params))
