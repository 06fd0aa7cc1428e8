"""Coupons granted to customers (Lago's /applied_coupons), with Lago's refusals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import (
    AppliedCoupon,
    Coupon,
    Frequency,
    FrequencyDuration,
    Percentage,
)
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ConcurrentUpdate, NotFound, ValidationFailed
from billow.domain.money import Cents, Currency
from billow.services.catalog_writes import CatalogInput
from billow.services.lookups import get_customer

GRANT_ATTEMPTS = 3
Status = Literal["active", "terminated"]


class AppliedCouponInput(CatalogInput):
    """Lago's AppliedCouponInput.applied_coupon: the coupon's terms may be overridden."""

    external_customer_id: Annotated[str, Field(min_length=1, max_length=255)]
    coupon_code: Annotated[str, Field(min_length=1, max_length=255)]
    amount_cents: Cents | None = None
    amount_currency: Currency | None = None
    percentage_rate: Percentage | None = None
    frequency: Frequency | None = None
    frequency_duration: FrequencyDuration | None = None


T = TypeVar("T")


def _override(given: T | None, default: T) -> T:
    return default if given is None else given


def _granted(
    coupon: Coupon, customer: Customer, given: AppliedCouponInput, now: str
) -> AppliedCoupon:
    """The grant's terms: the coupon's, overridden where the request says so."""
    fixed = coupon.coupon_type == "fixed_amount"
    frequency = _override(given.frequency, coupon.frequency)
    duration = _override(given.frequency_duration, coupon.frequency_duration)
    if frequency == "recurring" and duration is None:
        raise ValidationFailed({"frequency_duration": ["value_is_mandatory"]})
    amount = _override(given.amount_cents, coupon.amount_cents) if fixed else None
    return AppliedCoupon(
        lago_id=new_id(),
        organization_id=coupon.organization_id,
        lago_coupon_id=coupon.lago_id,
        coupon_code=coupon.code,
        coupon_name=coupon.name,
        lago_customer_id=customer.lago_id,
        external_customer_id=customer.external_id,
        coupon_type=coupon.coupon_type,
        amount_cents=amount,
        amount_currency=_override(given.amount_currency, coupon.amount_currency) if fixed else None,
        percentage_rate=None if fixed else _override(given.percentage_rate, coupon.percentage_rate),
        frequency=frequency,
        frequency_duration=duration if frequency == "recurring" else None,
        frequency_duration_remaining=duration if frequency == "recurring" else None,
        amount_cents_remaining=amount if fixed and frequency == "once" else None,
        plan_codes=coupon.plan_codes,
        created_at=now,
        applied_at=utcnow().isoformat(),
    )


def _refuse(
    coupon: Coupon,
    applied: AppliedCoupon,
    customer: Customer,
    already: Sequence[AppliedCoupon],
) -> None:
    """Lago's refusals: a non-reusable coupon the customer already had, a plan limitation
    overlapping an active coupon's, a fixed amount in another currency than the customer's."""
    if not coupon.reusable and any(a.lago_coupon_id == coupon.lago_id for a in already):
        raise ValidationFailed({"coupon": ["coupon_is_not_reusable"]})
    if applied.plan_codes and any(
        a.status == "active" and a.overlaps(applied.plan_codes) for a in already
    ):
        raise ValidationFailed({"coupon": ["plan_overlapping"]})
    if (
        applied.amount_currency is not None
        and customer.currency is not None
        and applied.amount_currency != customer.currency
    ):
        raise ValidationFailed({"currency": ["currencies_does_not_match"]})


def apply_coupon(
    deps: Dependencies, organization_id: str, given: AppliedCouponInput
) -> tuple[AppliedCoupon, Coupon]:
    """Grant a coupon. The grant commits only if the coupon is still as read (see
    ``stage_coupon_grant``); otherwise this reads again and decides anew."""
    customer = get_customer(deps, organization_id, given.external_customer_id)
    for _ in range(GRANT_ATTEMPTS):
        now = iso(utcnow())
        coupon = deps.store.coupons.get(organization_id, given.coupon_code)
        if coupon is None or coupon.ended_at(now):
            raise NotFound("coupon")
        applied = _granted(coupon, customer, given, now)
        already = deps.store.applied_coupons.list_for_customer(organization_id, customer.lago_id)
        _refuse(coupon, applied, customer, already)
        transaction = Transaction()
        deps.store.applied_coupons.stage(transaction, applied, None)
        deps.store.coupons.stage_grant(transaction, coupon)
        try:
            deps.store.commit(transaction)
        except ConcurrentUpdate:
            continue
        return applied, coupon
    raise ConcurrentUpdate(f"coupon {given.coupon_code} kept changing")


def list_page(
    deps: Dependencies,
    organization_id: str,
    external_customer_id: str | None,
    status: Status | None,
    coupon_codes: Sequence[str] | None,
    page: int,
    per_page: int,
) -> tuple[list[tuple[AppliedCoupon, Coupon]], int]:
    """Page ``page`` of a selection, newest first, with the coupon each came from, and how
    many the selection holds (codes filter on the coupon's code, which a grant keeps)."""
    customer_lago_id = None
    if external_customer_id is not None:
        customer = deps.store.customers.get(organization_id, external_customer_id)
        if customer is None:
            return [], 0
        customer_lago_id = customer.lago_id
    found, total = deps.store.applied_coupons.list_page(
        organization_id,
        customer_lago_id,
        [status] if status else list(get_args(Status)),
        coupon_codes or [],
        (page - 1) * per_page,
        per_page,
    )
    coupons = {
        coupon.lago_id: coupon
        for coupon in deps.store.coupons.get_many_by_id(
            organization_id, (applied.lago_coupon_id for applied in found)
        )
    }
    pairs = [(applied, coupons[applied.lago_coupon_id]) for applied in found]
    return pairs, total


def present(pairs: Sequence[tuple[AppliedCoupon, Coupon]]) -> list[dict[str, object]]:
    now = iso(utcnow())
    return [applied.as_lago(coupon, now) for applied, coupon in pairs]


def terminate(
    deps: Dependencies, organization_id: str, external_customer_id: str, lago_id: str
) -> tuple[AppliedCoupon, Coupon]:
    """Remove a coupon from a customer: it stops applying to the next invoices."""
    customer = get_customer(deps, organization_id, external_customer_id)
    before = deps.store.applied_coupons.get(organization_id, customer.lago_id, lago_id)
    if before is None:
        raise NotFound("applied_coupon")
    coupon = deps.store.coupons.get_by_id(organization_id, before.lago_coupon_id)
    if coupon is None:
        raise NotFound("coupon")
    if before.status == "terminated":
        return before, coupon
    after = before.model_copy(
        update={
            "status": "terminated",
            "terminated_at": iso(utcnow()),
            "version": before.version + 1,
        }
    )
    transaction = Transaction()
    deps.store.applied_coupons.stage(transaction, after, before)
    deps.store.commit(transaction)
    return after, coupon
