"""The catalog's domain rules: currencies, exact rates, coupon expiry and order of use."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from billow.domain.catalog import (
    AppliedCoupon,
    Coupon,
    Percentage,
    application_order,
    parse_moment,
    plain,
)
from billow.domain.money import Currency, currency_exponent


class Rated(BaseModel):
    model_config = ConfigDict(strict=True)
    rate: Percentage
    currency: Currency = "EUR"


def test_currency_exponents_follow_iso_4217() -> None:
    assert currency_exponent("EUR") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("KRW") == 0
    assert currency_exponent("CLF") == 4
    with pytest.raises(KeyError):
        currency_exponent("XXX")
    with pytest.raises(ValidationError):
        Rated(rate=Decimal(1), currency="usd")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("20", "20"),
        ("5.5", "5.5"),
        (19.6, "19.6"),
        (7, "7"),
        ("1e1", "10"),
        ("-0.0", "0"),
        ("0.000001", "0.000001"),
    ],
)
def test_rates_are_exact_decimals_in_plain_notation(given: object, expected: str) -> None:
    rate = Rated.model_validate({"rate": given}).rate
    assert isinstance(rate, Decimal)
    assert plain(rate) == expected


@pytest.mark.parametrize(
    "given", ["abc", "NaN", "Infinity", "-1", "100.01", True, None, [], "1e-30"]
)
def test_rates_out_of_range_or_malformed_are_refused(given: object) -> None:
    with pytest.raises(ValidationError):
        Rated.model_validate({"rate": given})


def test_moments_become_lago_utc_timestamps() -> None:
    assert parse_moment("2030-01-02T03:04:05+02:00") == "2030-01-02T01:04:05Z"
    assert parse_moment("2030-01-02T03:04:05") == "2030-01-02T03:04:05Z"
    with pytest.raises(ValueError, match="invalid_date"):
        parse_moment("next tuesday")


def coupon(**changes: object) -> Coupon:
    base: dict[str, object] = {
        "lago_id": "c",
        "organization_id": "o",
        "code": "welcome",
        "name": "Welcome",
        "coupon_type": "percentage",
        "percentage_rate": Decimal(10),
        "frequency": "once",
        "created_at": "2030-01-01T00:00:00Z",
    }
    return Coupon.model_validate({**base, **changes})


def test_a_time_limited_coupon_ends_at_its_expiration() -> None:
    limited = coupon(expiration="time_limit", expiration_at="2030-02-01T00:00:00Z")
    assert limited.ended_at("2030-01-31T23:59:59Z") is None
    assert limited.ended_at("2030-02-01T00:00:00Z") == "2030-02-01T00:00:00Z"
    assert limited.as_lago("2030-03-01T00:00:00Z")["terminated_at"] == "2030-02-01T00:00:00Z"
    assert coupon(terminated_at="2030-01-05T00:00:00Z").ended_at("2030-01-06T00:00:00Z")


def applied(lago_id: str, created_at: str, plan_codes: list[str]) -> AppliedCoupon:
    return AppliedCoupon(
        lago_id=lago_id,
        organization_id="o",
        lago_coupon_id="c",
        coupon_code="welcome",
        coupon_name="Welcome",
        lago_customer_id="cu",
        external_customer_id="ext",
        coupon_type="fixed_amount",
        amount_cents=100,
        amount_currency="EUR",
        frequency="forever",
        plan_codes=plan_codes,
        created_at=created_at,
    )


def test_plan_limited_coupons_are_used_first_then_oldest_first() -> None:
    ordered = application_order(
        [
            applied("a", "2030-01-01T00:00:00Z", []),
            applied("b", "2030-01-03T00:00:00Z", ["pro"]),
            applied("c", "2030-01-02T00:00:00Z", ["basic"]),
            applied("d", "2030-01-01T00:00:00Z", []),
        ]
    )
    assert [coupon.lago_id for coupon in ordered] == ["c", "b", "a", "d"]
