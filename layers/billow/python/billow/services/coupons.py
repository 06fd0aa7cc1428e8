"""Coupons (Lago's /coupons): discounts that can be granted to customers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import (
    COUPON_TERMS,
    Coupon,
    CouponType,
    Expiration,
    Frequency,
    FrequencyDuration,
    Name,
    Percentage,
    Text,
    parse_moment,
)
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import Identifier, IdentifierList
from billow.domain.money import Cents, Currency
from billow.services.catalog_writes import (
    CatalogInput,
    code_taken,
    commit_claiming_code,
    updates_from,
)
from billow.services.stripe_sync_requests import stage_sync, sync_views

Moment = Annotated[str, Field(max_length=64), AfterValidator(parse_moment)]


class AppliesToInput(CatalogInput):
    plan_codes: IdentifierList | None = None
    billable_metric_codes: list[str] | None = None


class CouponInput(CatalogInput):
    """Lago's CouponUpdateInput.coupon."""

    name: Name | None = None
    code: Identifier | None = None
    description: Text | None = None
    coupon_type: CouponType | None = None
    amount_cents: Cents | None = None
    amount_currency: Currency | None = None
    percentage_rate: Percentage | None = None
    frequency: Frequency | None = None
    frequency_duration: FrequencyDuration | None = None
    reusable: bool | None = None
    expiration: Expiration | None = None
    expiration_at: Moment | None = None
    applies_to: AppliesToInput | None = None


class CouponCreateInput(CouponInput):
    """Lago's CouponCreateInput.coupon."""

    name: Name
    code: Identifier
    coupon_type: CouponType
    frequency: Frequency
    expiration: Expiration


NULLABLE = frozenset(
    {"description", "amount_cents", "amount_currency", "percentage_rate", "frequency_duration"}
)
FROZEN_ONCE_APPLIED = COUPON_TERMS | {"code"}
"""As in Lago, a coupon granted to a customer keeps its code and terms; other changes apply."""


def _normalized(coupon: Coupon, now: str, check_expiry: bool) -> Coupon:
    """Drop what the coupon's type, frequency and expiration make meaningless, then refuse
    what is missing. Lago's codes: ``value_is_mandatory``, ``invalid_date``."""
    fixed = coupon.coupon_type == "fixed_amount"
    coupon = coupon.model_copy(
        update={
            "amount_cents": coupon.amount_cents if fixed else None,
            "amount_currency": coupon.amount_currency if fixed else None,
            "percentage_rate": None if fixed else coupon.percentage_rate,
            "frequency_duration": coupon.frequency_duration
            if coupon.frequency == "recurring"
            else None,
            "expiration_at": coupon.expiration_at if coupon.expiration == "time_limit" else None,
        }
    )
    errors: dict[str, object] = {}
    required = {
        "amount_cents": fixed,
        "amount_currency": fixed,
        "percentage_rate": not fixed,
        "frequency_duration": coupon.frequency == "recurring",
        "expiration_at": coupon.expiration == "time_limit",
    }
    for field, needed in required.items():
        if needed and getattr(coupon, field) is None:
            errors[field] = ["value_is_mandatory"]
    if check_expiry and coupon.expiration_at is not None and coupon.expiration_at <= now:
        errors["expiration_at"] = ["invalid_date"]
    if errors:
        raise ValidationFailed(errors)
    return coupon


def _plan_codes(deps: Dependencies, organization_id: str, given: AppliesToInput) -> list[str]:
    """Plans the coupon is limited to; Lago answers 404 ``plans_not_found`` for an unknown one."""
    if given.billable_metric_codes:
        raise ValidationFailed({"billable_metric_codes": ["not_supported"]})
    codes = list(dict.fromkeys(given.plan_codes or []))
    for code in codes:
        if deps.store.plans.get(organization_id, code) is None:
            raise NotFound("plans")
    return codes


def get_coupon(deps: Dependencies, organization_id: str, code: str) -> Coupon:
    coupon = deps.store.coupons.get(organization_id, code)
    if coupon is None:
        raise NotFound("coupon")
    return coupon


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[Coupon], int]:
    """Page ``page`` of the coupons not deleted, newest first, and how many there are."""
    return deps.store.coupons.list_page(organization_id, (page - 1) * per_page, per_page)


def present(
    deps: Dependencies, organization_id: str, coupons: Sequence[Coupon]
) -> list[dict[str, object]]:
    now = iso(utcnow())
    mirrored = sync_views(deps, organization_id, "coupon", [coupon.lago_id for coupon in coupons])
    return [{**coupon.as_lago(now), "stripe_sync": mirrored[coupon.lago_id]} for coupon in coupons]


def create_coupon(deps: Dependencies, organization_id: str, given: CouponCreateInput) -> Coupon:
    now = iso(utcnow())
    plan_codes = _plan_codes(deps, organization_id, given.applies_to or AppliesToInput())
    coupon = Coupon(
        lago_id=new_id(),
        organization_id=organization_id,
        code=given.code,
        name=given.name,
        description=given.description,
        coupon_type=given.coupon_type,
        amount_cents=given.amount_cents,
        amount_currency=given.amount_currency,
        percentage_rate=given.percentage_rate,
        frequency=given.frequency,
        frequency_duration=given.frequency_duration,
        reusable=given.reusable if given.reusable is not None else True,
        expiration=given.expiration,
        expiration_at=given.expiration_at,
        plan_codes=plan_codes,
        created_at=now,
    )
    coupon = _normalized(coupon, now, check_expiry=True)
    if deps.store.coupons.get(organization_id, coupon.code) is not None:
        raise code_taken()
    transaction = Transaction()
    deps.store.coupons.stage(transaction, coupon, None)
    stage_sync(
        deps, transaction, organization_id, "coupon", coupon.lago_id, coupon.code, coupon.version
    )
    commit_claiming_code(deps, transaction, lambda: True)
    return coupon


def update_coupon(
    deps: Dependencies, organization_id: str, code: str, given: CouponInput
) -> Coupon:
    now = iso(utcnow())
    before = get_coupon(deps, organization_id, code)
    updates = updates_from(given, NULLABLE)
    applies_to = updates.pop("applies_to", None)
    if isinstance(applies_to, AppliesToInput):
        updates["plan_codes"] = _plan_codes(deps, organization_id, applies_to)
    if before.applied_count:
        updates = {
            name: value for name, value in updates.items() if name not in FROZEN_ONCE_APPLIED
        }
    after = _normalized(
        before.model_copy(update={**updates, "version": before.version + 1}),
        now,
        # A new expiration must lie ahead; one left as it was may already have passed.
        check_expiry=updates.get("expiration_at", before.expiration_at) != before.expiration_at,
    )
    renamed = after.code != before.code
    if renamed and deps.store.coupons.get(organization_id, after.code) is not None:
        raise code_taken()
    transaction = Transaction()
    deps.store.coupons.stage(transaction, after, before)
    stage_sync(
        deps, transaction, organization_id, "coupon", after.lago_id, after.code, after.version
    )
    commit_claiming_code(
        deps,
        transaction,
        (lambda: deps.store.coupons.get(organization_id, after.code) is not None)
        if renamed
        else None,
    )
    return after


def delete_coupon(deps: Dependencies, organization_id: str, code: str) -> Coupon:
    """Terminates the coupon and frees its code. Customers keep what they were granted."""
    before = get_coupon(deps, organization_id, code)
    now = iso(utcnow())
    after = before.model_copy(
        update={
            "deleted_at": now,
            "terminated_at": before.ended_at(now) or now,
            "version": before.version + 1,
        }
    )
    transaction = Transaction()
    deps.store.coupons.stage(transaction, after, before)
    stage_sync(
        deps, transaction, organization_id, "coupon", after.lago_id, after.code, after.version
    )
    deps.store.commit(transaction)
    return after
