"""What Billow's catalog becomes in Stripe Billing (seed 004's mapping), and where the
dashboard links of synced objects point."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billow.domain.catalog import AddOn, Coupon, Plan
from billow.domain.customers import BillingConfiguration, Customer
from billow.domain.stripe_sync import (
    coupon_params,
    coupon_terms,
    dashboard_url,
    price_terms,
    product_name,
    recurring,
)

NOW = "2026-12-05T00:00:00Z"


def plan(**fields: Any) -> Plan:
    values: dict[str, Any] = {
        "lago_id": "p1",
        "organization_id": "o1",
        "code": "pro",
        "name": "Pro",
        "interval": "monthly",
        "amount_cents": 4900,
        "amount_currency": "EUR",
        "created_at": NOW,
    }
    return Plan.model_validate({**values, **fields})


def coupon(**fields: Any) -> Coupon:
    values: dict[str, Any] = {
        "lago_id": "c1",
        "organization_id": "o1",
        "code": "welcome",
        "name": "Welcome",
        "coupon_type": "percentage",
        "percentage_rate": Decimal("12.5"),
        "frequency": "once",
        "created_at": NOW,
    }
    return Coupon.model_validate({**values, **fields})


@pytest.mark.parametrize(
    ("interval", "expected"),
    [("weekly", ("week", 1)), ("monthly", ("month", 1)), ("quarterly", ("month", 3)),
     ("yearly", ("year", 1))],
)  # fmt: skip
def test_plan_intervals_are_stripe_recurrences(interval: str, expected: tuple[str, int]) -> None:
    assert recurring(plan(interval=interval)) == expected


def test_products_are_named_as_seed_004_names_them() -> None:
    add_on = AddOn(
        lago_id="a1",
        organization_id="o1",
        code="seats",
        name="10 Seats",
        amount_cents=1500,
        amount_currency="USD",
        created_at=NOW,
    )
    assert product_name(plan()) == "Pro Plan"
    assert product_name(add_on) == "10 Seats Add-on"
    assert price_terms(add_on) == "1500:usd"


def test_a_price_changes_with_amount_currency_or_interval_only() -> None:
    terms = price_terms(plan())
    assert terms == "4900:eur:month:1"
    assert price_terms(plan(name="Pro+", description="x")) == terms
    assert price_terms(plan(amount_cents=5900)) != terms
    assert price_terms(plan(amount_currency="USD")) != terms
    assert price_terms(plan(interval="quarterly")) != terms


def test_coupons_become_stripe_terms() -> None:
    assert coupon_params(coupon()) == {"duration": "once", "percent_off": 12.5}
    assert coupon_params(coupon(frequency="recurring", frequency_duration=3)) == {
        "duration": "repeating",
        "duration_in_months": 3,
        "percent_off": 12.5,
    }
    fixed = coupon(
        coupon_type="fixed_amount",
        percentage_rate=None,
        amount_cents=1000,
        amount_currency="USD",
        frequency="forever",
    )
    assert coupon_params(fixed) == {"duration": "forever", "amount_off": 1000, "currency": "usd"}
    # Stripe takes two decimals at most.
    assert coupon_params(coupon(percentage_rate=Decimal("33.333")))["percent_off"] == 33.33
    limited = coupon(expiration="time_limit", expiration_at="2027-01-01T00:00:00Z")
    assert coupon_params(limited)["redeem_by"] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    # The name is not a term: renaming changes the Stripe coupon, it does not replace it.
    assert coupon_terms(coupon(name="Hello")) == coupon_terms(coupon())


def test_dashboard_links_follow_the_key_mode() -> None:
    assert (
        dashboard_url("plan", "prod_1", False)
        == "https://dashboard.stripe.com/test/products/prod_1"
    )
    assert dashboard_url("coupon", "C1", True) == "https://dashboard.stripe.com/coupons/C1"
    customer = Customer(
        lago_id="cu1",
        organization_id="o1",
        external_id="acme",
        sequential_id=1,
        slug="acme",
        billing_configuration=BillingConfiguration(
            payment_provider="stripe", provider_customer_id="cus_1"
        ),
        stripe_livemode=True,
        created_at=NOW,
        updated_at=NOW,
    )
    assert customer.stripe_sync()["stripe_url"] == "https://dashboard.stripe.com/customers/cus_1"
    assert "stripe_livemode" not in customer.as_lago()
