"""Coupons, taxes and invoice totals (billow.domain.invoice_math)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billow.domain.invoice_math import (
    CouponState,
    FeeLine,
    TaxRate,
    apportion,
    compute_invoice,
    round_half_up,
)

VAT = TaxRate(code="vat_20", name="VAT", rate=Decimal(20))
REDUCED = TaxRate(code="vat_5_5", name="Reduced VAT", rate=Decimal("5.5"))
CITY = TaxRate(code="city", name="City tax", rate=Decimal("8.875"))


def fee(
    key: str,
    amount: int,
    *taxes: TaxRate,
    plan: str | None = "basic",
    metric: str | None = None,
) -> FeeLine:
    return FeeLine(
        key=key,
        amount_cents=amount,
        taxes=list(taxes),
        coupon_plan_code=plan,
        coupon_metric_code=metric,
    )


def percentage(
    rate: str, frequency: str = "once", remaining: int | None = None, **extra: Any
) -> CouponState:
    return CouponState.model_validate(
        {
            "lago_id": extra.pop("lago_id", f"pct-{rate}"),
            "coupon_type": "percentage",
            "percentage_rate": Decimal(rate),
            "frequency": frequency,
            "frequency_duration_remaining": remaining,
            **extra,
        }
    )


def fixed(
    amount: int, frequency: str = "once", remaining: int | None = None, **extra: Any
) -> CouponState:
    return CouponState.model_validate(
        {
            "lago_id": extra.pop("lago_id", f"fixed-{amount}"),
            "coupon_type": "fixed_amount",
            "amount_cents": amount,
            "frequency": frequency,
            "frequency_duration_remaining": remaining,
            **extra,
        }
    )


# --- Helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(1, 2), 1),
        (Fraction(3, 2), 2),
        (Fraction(5, 2), 3),
        (Fraction(-1, 2), -1),
        (Fraction(149, 100), 1),
        (Fraction(0), 0),
        (Fraction(7), 7),
    ],
)
def test_round_half_up(value: Fraction, expected: int) -> None:
    assert round_half_up(value) == expected


def test_apportion_by_largest_remainder() -> None:
    assert apportion(100, [Fraction(333, 10), Fraction(333, 10), Fraction(334, 10)]) == [33, 33, 34]
    assert apportion(2, [Fraction(2, 3)] * 3) == [1, 1, 0]  # ties go to the earlier share
    assert apportion(0, [Fraction(0), Fraction(0)]) == [0, 0]
    with pytest.raises(ValueError):
        apportion(5, [Fraction(1), Fraction(1)])


# --- No coupons, no taxes -------------------------------------------------------------------


def test_plain_invoice() -> None:
    totals = compute_invoice([fee("sub", 1000), fee("usage", 250)], [])
    assert totals.fees_amount_cents == 1250
    assert totals.coupons_amount_cents == 0
    assert totals.sub_total_excluding_taxes_amount_cents == 1250
    assert totals.taxes_amount_cents == 0
    assert totals.sub_total_including_taxes_amount_cents == 1250
    assert totals.total_amount_cents == 1250
    assert totals.applied_taxes == []
    assert totals.coupon_credits == []
    assert [f.total_amount_cents for f in totals.fees] == [1000, 250]


def test_empty_invoice() -> None:
    totals = compute_invoice([], [fixed(500)])
    assert totals.total_amount_cents == 0
    assert totals.coupon_credits == []


# --- Percentage coupons ---------------------------------------------------------------------


def test_percentage_once_is_used_up() -> None:
    coupon = percentage("10")
    totals = compute_invoice([fee("sub", 1000)], [coupon])
    (credit,) = totals.coupon_credits
    assert credit.amount_cents == 100
    assert credit.terminated
    assert credit.before == coupon
    assert credit.after == coupon
    assert credit.fee_amounts_cents == {"sub": 100}
    assert totals.coupons_amount_cents == 100
    assert totals.sub_total_excluding_taxes_amount_cents == 900


@pytest.mark.parametrize(
    ("rate", "base", "expected"),
    [
        ("12.5", 1001, 125),  # 125.125
        ("10", 5, 1),  # 0.5 rounds up
        ("10", 4, 0),  # 0.4 rounds down, the coupon is still used
        ("33.333", 300, 100),  # 99.999
        ("100", 777, 777),
    ],
)
def test_percentage_rounding(rate: str, base: int, expected: int) -> None:
    totals = compute_invoice([fee("sub", base)], [percentage(rate)])
    (credit,) = totals.coupon_credits
    assert credit.amount_cents == expected
    assert credit.terminated


def test_percentage_recurring_counts_down() -> None:
    totals = compute_invoice([fee("sub", 2000)], [percentage("25", "recurring", 3)])
    (credit,) = totals.coupon_credits
    assert credit.amount_cents == 500
    assert credit.after.frequency_duration_remaining == 2
    assert not credit.terminated
    last = compute_invoice([fee("sub", 2000)], [percentage("25", "recurring", 1)])
    assert last.coupon_credits[0].after.frequency_duration_remaining == 0
    assert last.coupon_credits[0].terminated


def test_percentage_forever_never_ends() -> None:
    coupon = percentage("50", "forever")
    (credit,) = compute_invoice([fee("sub", 999)], [coupon]).coupon_credits
    assert credit.amount_cents == 500  # 499.5
    assert credit.after == coupon
    assert not credit.terminated


# --- Fixed amount coupons -------------------------------------------------------------------


def test_fixed_once_carries_its_remainder_over() -> None:
    coupon = fixed(5000)
    first = compute_invoice([fee("sub", 3000)], [coupon])
    (credit,) = first.coupon_credits
    assert credit.amount_cents == 3000
    assert credit.after.amount_cents_remaining == 2000
    assert not credit.terminated
    assert first.sub_total_excluding_taxes_amount_cents == 0

    second = compute_invoice([fee("sub", 3000)], [credit.after])
    (again,) = second.coupon_credits
    assert again.amount_cents == 2000
    assert again.after.amount_cents_remaining == 0
    assert again.terminated
    assert second.sub_total_excluding_taxes_amount_cents == 1000


def test_fixed_once_used_exactly() -> None:
    (credit,) = compute_invoice([fee("sub", 800)], [fixed(800)]).coupon_credits
    assert credit.amount_cents == 800
    assert credit.terminated


def test_fixed_recurring_is_capped_at_the_base_without_carry_over() -> None:
    coupon = fixed(5000, "recurring", 2)
    (credit,) = compute_invoice([fee("sub", 3000)], [coupon]).coupon_credits
    assert credit.amount_cents == 3000
    assert credit.after.frequency_duration_remaining == 1
    assert credit.after.amount_cents_remaining is None
    assert not credit.terminated
    (last,) = compute_invoice([fee("sub", 9000)], [credit.after]).coupon_credits
    assert last.amount_cents == 5000
    assert last.terminated


def test_fixed_forever() -> None:
    coupon = fixed(1500, "forever")
    (credit,) = compute_invoice([fee("sub", 1000), fee("usage", 1000)], [coupon]).coupon_credits
    assert credit.amount_cents == 1500
    assert credit.after == coupon
    assert not credit.terminated
    assert credit.fee_amounts_cents == {"sub": 750, "usage": 750}


# --- Several coupons, limits, base ----------------------------------------------------------


def test_coupons_apply_in_the_given_order() -> None:
    fees = [fee("sub", 1000)]
    fixed_first = compute_invoice(fees, [fixed(500, lago_id="f"), percentage("10", lago_id="p")])
    assert [c.amount_cents for c in fixed_first.coupon_credits] == [500, 50]
    percent_first = compute_invoice(fees, [percentage("10", lago_id="p"), fixed(500, lago_id="f")])
    assert [c.amount_cents for c in percent_first.coupon_credits] == [100, 500]
    assert fixed_first.coupons_amount_cents == 550
    assert percent_first.coupons_amount_cents == 600


def test_a_coupon_with_no_base_left_is_not_consumed() -> None:
    later = percentage("10", "recurring", 3, lago_id="later")
    totals = compute_invoice([fee("sub", 400)], [fixed(1000, lago_id="first"), later])
    assert [c.lago_id for c in totals.coupon_credits] == ["first"]
    assert totals.coupon_credits[0].after.amount_cents_remaining == 600
    assert totals.sub_total_excluding_taxes_amount_cents == 0


def test_zero_fees_consume_no_coupon() -> None:
    totals = compute_invoice([fee("sub", 0)], [fixed(100), percentage("10")])
    assert totals.coupon_credits == []


def test_coupons_never_apply_to_add_on_fees() -> None:
    one_off = [fee("setup", 5000, VAT, plan=None)]
    totals = compute_invoice(one_off, [percentage("50")])
    assert totals.coupon_credits == []
    assert totals.total_amount_cents == 6000
    mixed = compute_invoice([fee("setup", 5000, plan=None), fee("sub", 1000)], [fixed(3000)])
    assert mixed.coupons_amount_cents == 1000
    assert mixed.fees[0].precise_coupons_amount_cents == 0


def test_plan_limited_coupon() -> None:
    fees = [fee("a", 1000, plan="starter"), fee("b", 3000, plan="premium")]
    coupon = percentage("10", plan_codes=["premium"])
    totals = compute_invoice(fees, [coupon])
    assert totals.coupons_amount_cents == 300
    assert [f.precise_coupons_amount_cents for f in totals.fees] == [0, 300]
    nothing = compute_invoice([fees[0]], [coupon])
    assert nothing.coupon_credits == []


def test_metric_limited_coupon() -> None:
    fees = [
        fee("sub", 1000, plan="p"),
        fee("api", 600, plan="p", metric="api_calls"),
        fee("storage", 400, plan="p", metric="storage"),
    ]
    totals = compute_invoice(fees, [fixed(1000, billable_metric_codes=["api_calls"])])
    assert totals.coupons_amount_cents == 600
    assert [f.precise_coupons_amount_cents for f in totals.fees] == [0, 600, 0]


def test_limited_then_unlimited_coupons_share_the_base() -> None:
    fees = [fee("a", 1000, plan="starter"), fee("b", 1000, plan="premium")]
    coupons = [fixed(800, plan_codes=["premium"], lago_id="limited"), percentage("50")]
    totals = compute_invoice(fees, coupons)
    # The unlimited coupon's base is what remains of both fees: 1000 + 200.
    assert [c.amount_cents for c in totals.coupon_credits] == [800, 600]
    assert [f.precise_coupons_amount_cents for f in totals.fees] == [500, 900]


def test_credit_is_spread_pro_rata_with_exact_integers() -> None:
    fees = [fee("a", 333), fee("b", 333), fee("c", 334)]
    totals = compute_invoice(fees, [fixed(100)])
    assert [f.precise_coupons_amount_cents for f in totals.fees] == [33, 33, 34]
    tiny = compute_invoice([fee("a", 1), fee("b", 1), fee("c", 1)], [fixed(2)])
    assert [f.precise_coupons_amount_cents for f in tiny.fees] == [1, 1, 0]
    uneven = compute_invoice([fee("a", 7), fee("b", 3)], [percentage("33")])
    assert uneven.coupons_amount_cents == 3  # 3.3
    assert [f.precise_coupons_amount_cents for f in uneven.fees] == [2, 1]  # 2.1, 0.9


def test_exhausted_coupons_are_skipped() -> None:
    spent = fixed(500, amount_cents_remaining=0)
    finished = percentage("10", "recurring", 0)
    assert compute_invoice([fee("sub", 1000)], [spent, finished]).coupon_credits == []


@pytest.mark.parametrize(
    "data",
    [
        {"lago_id": "x", "coupon_type": "fixed_amount", "frequency": "once"},
        {"lago_id": "x", "coupon_type": "percentage", "frequency": "once"},
        {
            "lago_id": "x",
            "coupon_type": "percentage",
            "percentage_rate": "101",
            "frequency": "once",
        },
        {
            "lago_id": "x",
            "coupon_type": "percentage",
            "percentage_rate": "5",
            "frequency": "recurring",
        },
        {"lago_id": "x", "coupon_type": "fixed_amount", "amount_cents": -1, "frequency": "once"},
    ],
)
def test_invalid_coupons(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CouponState.model_validate(data)


# --- Taxes ----------------------------------------------------------------------------------


def test_tax_on_the_fee_less_its_coupons() -> None:
    totals = compute_invoice([fee("sub", 1000, VAT)], [percentage("10")])
    (result,) = totals.fees
    assert result.precise_coupons_amount_cents == 100
    assert result.taxable_amount_cents == 900
    assert result.taxes_amount_cents == 180
    assert result.total_amount_cents == 1180  # amount + taxes, as Lago's fee shows it
    assert totals.taxes_amount_cents == 180
    assert totals.sub_total_excluding_taxes_amount_cents == 900
    assert totals.sub_total_including_taxes_amount_cents == 1080
    assert totals.total_amount_cents == 1080
    (applied,) = totals.applied_taxes
    assert (applied.code, applied.amount_cents, applied.fees_amount_cents) == ("vat_20", 180, 900)


def test_several_taxes_on_one_fee() -> None:
    totals = compute_invoice([fee("sub", 1000, VAT, REDUCED)], [])
    (result,) = totals.fees
    assert result.taxes_rate == Decimal("25.5")
    assert [(t.code, t.amount_cents) for t in result.applied_taxes] == [
        ("vat_20", 200),
        ("vat_5_5", 55),
    ]
    assert result.taxes_amount_cents == 255
    assert totals.total_amount_cents == 1255


def test_the_invoice_rounds_each_tax_once_and_fees_share_it() -> None:
    # Each fee's exact tax is 0.5: the invoice rounds the sum (1.5 → 2), as Lago does, and the
    # fees get 1, 1, 0 rather than 1 each.
    half = TaxRate(code="half", name="Half", rate=Decimal(50))
    totals = compute_invoice([fee("a", 1, half), fee("b", 1, half), fee("c", 1, half)], [])
    assert totals.taxes_amount_cents == 2
    assert [f.taxes_amount_cents for f in totals.fees] == [1, 1, 0]
    assert totals.applied_taxes[0].amount_cents == 2


def test_fractional_tax_rates() -> None:
    fees = [fee("a", 1999, CITY), fee("b", 2999, CITY, VAT), fee("c", 500)]
    totals = compute_invoice(fees, [])
    # city: (1999 + 2999) × 8.875 % = 443.5725 → 444 ; vat: 2999 × 20 % = 599.8 → 600
    assert [(t.code, t.amount_cents, t.fees_amount_cents) for t in totals.applied_taxes] == [
        ("city", 444, 4998),
        ("vat_20", 600, 2999),
    ]
    assert totals.taxes_amount_cents == 1044
    assert [f.taxes_amount_cents for f in totals.fees] == [178, 266 + 600, 0]
    assert sum(f.taxes_amount_cents for f in totals.fees) == totals.taxes_amount_cents


def test_zero_rate_tax_is_listed() -> None:
    exempt = TaxRate(code="exempt", name="Exempt", rate=Decimal(0))
    totals = compute_invoice([fee("sub", 1000, exempt)], [])
    assert totals.taxes_amount_cents == 0
    assert totals.applied_taxes[0].fees_amount_cents == 1000


def test_invalid_fee_sets() -> None:
    with pytest.raises(ValueError, match="unique"):
        compute_invoice([fee("a", 1), fee("a", 2)], [])
    other_vat = TaxRate(code="vat_20", name="VAT", rate=Decimal(19))
    with pytest.raises(ValueError, match="different rates"):
        compute_invoice([fee("a", 1, VAT), fee("b", 1, other_vat)], [])
    with pytest.raises(ValidationError):
        fee("a", 1, VAT, VAT)
    with pytest.raises(ValidationError):
        fee("a", -5)


# --- Properties -----------------------------------------------------------------------------

TAXES = [VAT, REDUCED, CITY, TaxRate(code="odd", name="Odd", rate=Decimal("0.333"))]

fee_lines = st.lists(
    st.builds(
        lambda amount, taxes, plan: (amount, taxes, plan),
        st.integers(0, 100_000),
        st.lists(st.sampled_from(TAXES), unique_by=lambda tax: tax.code, max_size=3),
        st.sampled_from(["starter", "premium", None]),
    ),
    max_size=6,
).map(
    lambda rows: [
        FeeLine(key=f"fee-{index}", amount_cents=amount, taxes=taxes, coupon_plan_code=plan)
        for index, (amount, taxes, plan) in enumerate(rows)
    ]
)


@st.composite
def coupon_states(draw: st.DrawFn) -> CouponState:
    frequency = draw(st.sampled_from(["once", "recurring", "forever"]))
    data: dict[str, object] = {
        "lago_id": f"c{draw(st.integers(0, 10**6))}",
        "frequency": frequency,
        "frequency_duration_remaining": draw(st.integers(0, 5))
        if frequency == "recurring"
        else None,
        "plan_codes": draw(st.sampled_from([[], ["starter"], ["premium", "starter"]])),
    }
    if draw(st.booleans()):
        data["coupon_type"] = "percentage"
        data["percentage_rate"] = draw(
            st.decimals(min_value=0, max_value=100, places=3, allow_nan=False)
        )
    else:
        data["coupon_type"] = "fixed_amount"
        data["amount_cents"] = draw(st.integers(0, 200_000))
        data["amount_cents_remaining"] = draw(st.none() | st.integers(0, 200_000))
    return CouponState.model_validate(data)


@settings(max_examples=200, deadline=None)
@given(fees=fee_lines, coupons=st.lists(coupon_states(), max_size=4))
def test_invoice_invariants(fees: list[FeeLine], coupons: list[CouponState]) -> None:
    totals = compute_invoice(fees, coupons)
    results = totals.fees
    eligible = sum(f.amount_cents for f in fees if f.coupon_plan_code is not None)

    # Coupons never exceed their base, per fee or in total, and the fee shares add up.
    assert 0 <= totals.coupons_amount_cents <= eligible
    for line, result in zip(fees, results, strict=True):
        assert 0 <= result.precise_coupons_amount_cents <= line.amount_cents
        if line.coupon_plan_code is None:
            assert result.precise_coupons_amount_cents == 0
    assert sum(r.precise_coupons_amount_cents for r in results) == totals.coupons_amount_cents
    for credit in totals.coupon_credits:
        assert sum(credit.fee_amounts_cents.values()) == credit.amount_cents
        if credit.before.coupon_type == "fixed_amount":
            assert credit.amount_cents <= (
                credit.before.amount_cents_remaining
                if credit.before.frequency == "once"
                and credit.before.amount_cents_remaining is not None
                else credit.before.amount_cents or 0
            )

    # Taxes: every fee's share of a tax is its exact amount rounded down or up, and the fee
    # taxes add up to the invoice's taxes, which are the rounded per-code sums.
    for line, result in zip(fees, results, strict=True):
        base = line.amount_cents - result.precise_coupons_amount_cents
        for tax, applied in zip(line.taxes, result.applied_taxes, strict=True):
            exact = Fraction(base) * Fraction(tax.rate) / 100
            assert floor(exact) <= applied.amount_cents <= ceil(exact)
        assert result.taxes_amount_cents == sum(t.amount_cents for t in result.applied_taxes)
        assert result.total_amount_cents == result.amount_cents + result.taxes_amount_cents
    assert sum(r.taxes_amount_cents for r in results) == totals.taxes_amount_cents
    assert sum(t.amount_cents for t in totals.applied_taxes) == totals.taxes_amount_cents
    for applied_total in totals.applied_taxes:
        exact = Fraction(applied_total.fees_amount_cents) * Fraction(applied_total.rate) / 100
        assert applied_total.amount_cents == round_half_up(exact)

    # Totals.
    assert totals.fees_amount_cents == sum(f.amount_cents for f in fees)
    assert (
        totals.sub_total_excluding_taxes_amount_cents
        == totals.fees_amount_cents - totals.coupons_amount_cents
    )
    assert totals.sub_total_excluding_taxes_amount_cents >= 0
    assert (
        totals.total_amount_cents
        == totals.sub_total_including_taxes_amount_cents
        == totals.sub_total_excluding_taxes_amount_cents + totals.taxes_amount_cents
    )
