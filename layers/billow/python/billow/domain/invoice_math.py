"""An invoice's coupons, taxes and totals, as Lago computes them.

The caller maps its catalog objects onto :class:`FeeLine` and :class:`CouponState` and calls
:func:`compute_invoice`. Money is integer minor units (cents), rates are ``Decimal``
percentages; the arithmetic is exact (``Fraction``) and every rounding is half-up.

Coupons (in the order given; Lago's order is metric-limited, then plan-limited, then
unlimited, each by creation date, and sorting is the caller's job) apply before taxes to the
coupon-eligible fees, i.e. those with a ``coupon_plan_code`` (subscription, charge and
commitment fees; never add-on or one-off fees):

* a coupon's base is what remains of the fees it applies to after the coupons before it;
  with a base of 0 it credits nothing and is not consumed (no :class:`CouponCredit`), and
  neither is a coupon with nothing left (``recurring`` at 0, fixed ``once`` with 0 left);
* percentage: ``round(base × rate / 100)``, at most the base;
* fixed ``once``: ``min(amount_cents_remaining or amount_cents, base)``; the rest carries over
  to later invoices and the coupon ends when nothing remains;
* fixed ``recurring`` / ``forever``: ``min(amount_cents, base)``;
* ``recurring`` counts down ``frequency_duration_remaining`` and ends at 0, a percentage
  ``once`` ends after its first use, ``forever`` never ends;
* each credit is spread over its fees in proportion to what remains of them, by largest
  remainder (ties to the earlier fee), so the fee shares add up to the credit exactly.

Taxes apply to each fee's amount less its coupon share. As Lago does, the invoice's amount for
each tax code is the *rounded sum* of the exact per-fee amounts, ``round(Σ base × rate /
100)``, and ``taxes_amount_cents`` is the sum of those. That per-tax amount is then split over
the fees carrying the tax by largest remainder on their exact amounts, so every fee's share is
its exact amount rounded down or up, and the fee taxes add up to the invoice taxes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CouponType = Literal["fixed_amount", "percentage"]
CouponFrequency = Literal["once", "recurring", "forever"]

_HUNDRED = Fraction(100)


def round_half_up(value: Fraction) -> int:
    """``value`` rounded to an integer, halves away from zero (Ruby's ``round``)."""
    magnitude = abs(value)
    rounded = floor(magnitude + Fraction(1, 2))
    return rounded if value >= 0 else -rounded


def apportion(total: int, shares: Sequence[Fraction]) -> list[int]:
    """Integers close to ``shares`` that add up to ``total`` (largest remainder method).

    Each result is its share rounded down, plus one for the shares with the largest
    fractional parts (ties to the earlier share) until the total is reached. ``total`` must
    lie between the sum of the floors and the sum of the ceilings of the shares.
    """
    floors = [floor(share) for share in shares]
    missing = total - sum(floors)
    order = sorted(range(len(shares)), key=lambda index: (floors[index] - shares[index], index))
    if missing < 0 or missing > sum(
        1 for share, low in zip(shares, floors, strict=True) if share != low
    ):
        raise ValueError("total cannot be apportioned over these shares")
    for index in order[:missing]:
        floors[index] += 1
    return floors


def _finite(value: Decimal | None, name: str) -> None:
    if value is not None and not value.is_finite():
        raise ValueError(f"{name} must be a finite number")


class TaxRate(BaseModel):
    """A tax applied to a fee: ``rate`` is a percentage (``Decimal("20")`` for 20 %)."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    rate: Decimal = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _finite(self.rate, "rate")
        return self


class FeeLine(BaseModel):
    """One fee of the invoice before coupons and taxes.

    ``coupon_plan_code`` is the code of the plan the fee belongs to, None for fees coupons
    never apply to (add-on and one-off fees). ``coupon_metric_code`` is the billable metric
    code of a charge fee, for metric-limited coupons.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    amount_cents: int = Field(ge=0)
    taxes: list[TaxRate] = Field(default_factory=list)
    coupon_plan_code: str | None = None
    coupon_metric_code: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        codes = [tax.code for tax in self.taxes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"fee {self.key!r} lists a tax code twice")
        return self


class CouponState(BaseModel):
    """An applied coupon as it stands before this invoice.

    ``plan_codes`` / ``billable_metric_codes`` limit it to fees of those plans / metrics; with
    neither it applies to every coupon-eligible fee.
    """

    model_config = ConfigDict(frozen=True)

    lago_id: str
    coupon_type: CouponType
    amount_cents: int | None = Field(default=None, ge=0)
    percentage_rate: Decimal | None = Field(default=None, ge=0, le=100)
    frequency: CouponFrequency
    frequency_duration_remaining: int | None = Field(default=None, ge=0)
    amount_cents_remaining: int | None = Field(default=None, ge=0)
    plan_codes: list[str] = Field(default_factory=list)
    billable_metric_codes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _finite(self.percentage_rate, "percentage_rate")
        if self.coupon_type == "fixed_amount" and self.amount_cents is None:
            raise ValueError("a fixed_amount coupon needs amount_cents")
        if self.coupon_type == "percentage" and self.percentage_rate is None:
            raise ValueError("a percentage coupon needs percentage_rate")
        if self.frequency == "recurring" and self.frequency_duration_remaining is None:
            raise ValueError("a recurring coupon needs frequency_duration_remaining")
        return self

    def applies_to(self, fee: FeeLine) -> bool:
        if fee.coupon_plan_code is None:
            return False
        if self.billable_metric_codes:
            return fee.coupon_metric_code in self.billable_metric_codes
        if self.plan_codes:
            return fee.coupon_plan_code in self.plan_codes
        return True

    @property
    def exhausted(self) -> bool:
        """Nothing left to credit (a state that should already be terminated)."""
        if self.frequency == "recurring" and self.frequency_duration_remaining == 0:
            return True
        return self.fixed_once_remaining == 0

    @property
    def fixed_once_remaining(self) -> int | None:
        """What a fixed ``once`` coupon can still credit; None for other coupons."""
        if self.coupon_type != "fixed_amount" or self.frequency != "once":
            return None
        if self.amount_cents_remaining is not None:
            return self.amount_cents_remaining
        return self.amount_cents


class CouponCredit(BaseModel):
    """What one coupon credited on this invoice and its state afterwards.

    ``fee_amounts_cents`` maps fee keys to their share of ``amount_cents``.
    """

    model_config = ConfigDict(frozen=True)

    lago_id: str
    amount_cents: int
    before: CouponState
    after: CouponState
    terminated: bool
    fee_amounts_cents: dict[str, int]


class AppliedTax(BaseModel):
    """One tax on one fee."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    rate: Decimal
    amount_cents: int


class AppliedTaxTotal(BaseModel):
    """One tax code on the invoice: ``fees_amount_cents`` is its taxable base (fees less
    their coupons) and ``amount_cents`` the rounded tax on it."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    rate: Decimal
    amount_cents: int
    fees_amount_cents: int


class FeeResult(BaseModel):
    """A fee after coupons and taxes. ``total_amount_cents`` is amount + taxes, as in Lago's
    fee object (coupons show on the invoice, not in the fee total)."""

    model_config = ConfigDict(frozen=True)

    key: str
    amount_cents: int
    precise_coupons_amount_cents: int
    taxes_amount_cents: int
    taxes_rate: Decimal
    total_amount_cents: int
    applied_taxes: list[AppliedTax]

    @property
    def taxable_amount_cents(self) -> int:
        return self.amount_cents - self.precise_coupons_amount_cents


class InvoiceTotals(BaseModel):
    """Lago's invoice amounts before credit notes and prepaid credits, which the caller
    deducts from ``total_amount_cents`` afterwards."""

    model_config = ConfigDict(frozen=True)

    fees_amount_cents: int
    coupons_amount_cents: int
    sub_total_excluding_taxes_amount_cents: int
    taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    total_amount_cents: int
    fees: list[FeeResult]
    applied_taxes: list[AppliedTaxTotal]
    coupon_credits: list[CouponCredit]


def _coupon_credit(coupon: CouponState, base: int) -> int:
    if coupon.coupon_type == "percentage":
        assert coupon.percentage_rate is not None
        return min(base, round_half_up(base * Fraction(coupon.percentage_rate) / _HUNDRED))
    remaining = coupon.fixed_once_remaining
    if remaining is not None:
        return min(remaining, base)
    assert coupon.amount_cents is not None
    return min(coupon.amount_cents, base)


def _consume(coupon: CouponState, credited: int) -> tuple[CouponState, bool]:
    """The coupon's state after crediting ``credited`` on an invoice, and whether it ended."""
    if coupon.frequency == "forever":
        return coupon, False
    if coupon.frequency == "recurring":
        assert coupon.frequency_duration_remaining is not None
        left = coupon.frequency_duration_remaining - 1
        return coupon.model_copy(update={"frequency_duration_remaining": left}), left == 0
    remaining = coupon.fixed_once_remaining
    if remaining is None:  # percentage once: a single use
        return coupon, True
    left = remaining - credited
    return coupon.model_copy(update={"amount_cents_remaining": left}), left == 0


def _apply_coupons(
    fees: Sequence[FeeLine], coupons: Sequence[CouponState]
) -> tuple[list[int], list[CouponCredit]]:
    """Each fee's coupon amount, and the credit of every coupon consumed."""
    fee_coupons = [0] * len(fees)
    credits: list[CouponCredit] = []
    for coupon in coupons:
        if coupon.exhausted:
            continue
        targets = [index for index, fee in enumerate(fees) if coupon.applies_to(fee)]
        remaining = [fees[index].amount_cents - fee_coupons[index] for index in targets]
        base = sum(remaining)
        if base <= 0:
            continue
        credited = _coupon_credit(coupon, base)
        shares = apportion(credited, [Fraction(credited * left, base) for left in remaining])
        for index, share in zip(targets, shares, strict=True):
            fee_coupons[index] += share
        after, terminated = _consume(coupon, credited)
        credits.append(
            CouponCredit(
                lago_id=coupon.lago_id,
                amount_cents=credited,
                before=coupon,
                after=after,
                terminated=terminated,
                fee_amounts_cents={
                    fees[index].key: share
                    for index, share in zip(targets, shares, strict=True)
                    if share
                },
            )
        )
    return fee_coupons, credits


def compute_invoice(fees: Sequence[FeeLine], coupons: Sequence[CouponState]) -> InvoiceTotals:
    """Apply ``coupons`` (in application order) then taxes to ``fees``; Lago's totals."""
    keys = [fee.key for fee in fees]
    if len(set(keys)) != len(keys):
        raise ValueError("fee keys must be unique")
    fee_coupons, credits = _apply_coupons(fees, coupons)
    taxable = [fee.amount_cents - coupon for fee, coupon in zip(fees, fee_coupons, strict=True)]

    # Group the taxes by code, in order of first appearance.
    taxes: dict[str, TaxRate] = {}
    carriers: dict[str, list[int]] = {}
    for index, fee in enumerate(fees):
        for tax in fee.taxes:
            known = taxes.setdefault(tax.code, tax)
            if known.rate != tax.rate:
                raise ValueError(f"tax {tax.code!r} appears with different rates")
            carriers.setdefault(tax.code, []).append(index)

    fee_taxes: list[dict[str, int]] = [{} for _ in fees]
    applied_taxes: list[AppliedTaxTotal] = []
    for code, tax in taxes.items():
        indexes = carriers[code]
        rate = Fraction(tax.rate) / _HUNDRED
        exact = [taxable[index] * rate for index in indexes]
        amount = round_half_up(sum(exact, Fraction(0)))
        for index, share in zip(indexes, apportion(amount, exact), strict=True):
            fee_taxes[index][code] = share
        applied_taxes.append(
            AppliedTaxTotal(
                code=code,
                name=tax.name,
                rate=tax.rate,
                amount_cents=amount,
                fees_amount_cents=sum(taxable[index] for index in indexes),
            )
        )

    results: list[FeeResult] = []
    for index, fee in enumerate(fees):
        fee_tax = sum(fee_taxes[index].values())
        results.append(
            FeeResult(
                key=fee.key,
                amount_cents=fee.amount_cents,
                precise_coupons_amount_cents=fee_coupons[index],
                taxes_amount_cents=fee_tax,
                taxes_rate=sum((tax.rate for tax in fee.taxes), Decimal(0)),
                total_amount_cents=fee.amount_cents + fee_tax,
                applied_taxes=[
                    AppliedTax(
                        code=tax.code,
                        name=tax.name,
                        rate=tax.rate,
                        amount_cents=fee_taxes[index][tax.code],
                    )
                    for tax in fee.taxes
                ],
            )
        )

    fees_amount = sum(fee.amount_cents for fee in fees)
    coupons_amount = sum(credit.amount_cents for credit in credits)
    sub_total_excluding = fees_amount - coupons_amount
    taxes_amount = sum(tax.amount_cents for tax in applied_taxes)
    sub_total_including = sub_total_excluding + taxes_amount
    return InvoiceTotals(
        fees_amount_cents=fees_amount,
        coupons_amount_cents=coupons_amount,
        sub_total_excluding_taxes_amount_cents=sub_total_excluding,
        taxes_amount_cents=taxes_amount,
        sub_total_including_taxes_amount_cents=sub_total_including,
        total_amount_cents=sub_total_including,
        fees=results,
        applied_taxes=applied_taxes,
        coupon_credits=credits,
    )


class ServiceTaxes(BaseModel):
    """Taxes a tax service computed for an invoice (Stripe Tax): the tax on each fee, and
    the invoice's tax by rate, each with its taxable base."""

    model_config = ConfigDict(frozen=True)

    fee_taxes: dict[str, int]
    """Tax per fee key; a fee not named carries none."""
    rates: list[AppliedTaxTotal]


def with_service_taxes(totals: InvoiceTotals, taxes: ServiceTaxes) -> InvoiceTotals:
    """``totals`` (computed without tax rates) taxed as the service says: its amounts are
    kept exactly, never recomputed. A fee's tax is split over the invoice's rates in
    proportion to what each rate taxes in all (largest remainder), so the fee shares add
    up to the fee's tax; with one rate, the whole tax is that rate's."""
    taxed_base = sum(rate.amount_cents for rate in taxes.rates)
    fees: list[FeeResult] = []
    for fee in totals.fees:
        fee_tax = taxes.fee_taxes.get(fee.key, 0)
        shares = (
            apportion(
                fee_tax,
                [Fraction(fee_tax * rate.amount_cents, taxed_base) for rate in taxes.rates],
            )
            if taxed_base
            else [0 for _ in taxes.rates]
        )
        fees.append(
            fee.model_copy(
                update={
                    "taxes_amount_cents": fee_tax,
                    "taxes_rate": sum((rate.rate for rate in taxes.rates), Decimal(0))
                    if fee_tax
                    else Decimal(0),
                    "total_amount_cents": fee.amount_cents + fee_tax,
                    "applied_taxes": [
                        AppliedTax(
                            code=rate.code, name=rate.name, rate=rate.rate, amount_cents=share
                        )
                        for rate, share in zip(taxes.rates, shares, strict=True)
                        if share
                    ],
                }
            )
        )
    taxes_amount = sum(taxes.fee_taxes.values())
    including = totals.sub_total_excluding_taxes_amount_cents + taxes_amount
    return totals.model_copy(
        update={
            "fees": fees,
            "applied_taxes": list(taxes.rates),
            "taxes_amount_cents": taxes_amount,
            "sub_total_including_taxes_amount_cents": including,
            "total_amount_cents": including,
        }
    )
