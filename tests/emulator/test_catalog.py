"""The emulator's Stripe Billing catalog: Products, Prices and Coupons behave as Stripe's
(shapes, immutable terms, filters, deletion, errors, events)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
import stripe


def test_a_product_has_todays_shape_and_lists_by_active(client: stripe.StripeClient) -> None:
    kept = client.v1.products.create({"name": "Pro Plan", "metadata": {"billow_id": "p1"}})
    archived = client.v1.products.create({"name": "Old Plan"})
    client.v1.products.update(archived.id, {"active": False})
    shown = kept.to_dict()
    assert shown["object"] == "product" and shown["id"].startswith("prod_")
    assert shown["metadata"] == {"billow_id": "p1"}
    for field in ("default_price", "images", "marketing_features", "tax_code", "updated"):
        assert field in shown
    assert [p.id for p in client.v1.products.list({"active": True}).data] == [kept.id]
    assert [p.id for p in client.v1.products.list({"active": False}).data] == [archived.id]


def test_prices_are_immutable_and_filtered(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "Pro Plan"})
    monthly = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "USD",
            "unit_amount": 4900,
            "recurring": {"interval": "month", "interval_count": 3},
        }
    )
    once = client.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 10})
    assert (monthly.type, monthly.currency, monthly.unit_amount_decimal) == (
        "recurring",
        "usd",
        Decimal(4900),
    )
    assert monthly.recurring is not None and monthly.recurring.interval_count == 3
    assert (once.type, once.recurring) == ("one_time", None)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.prices.update(monthly.id, {"unit_amount": 5900})  # type: ignore[typeddict-unknown-key]
    assert refused.value.param == "unit_amount"

    client.v1.prices.update(monthly.id, {"active": False})
    assert [p.id for p in client.v1.prices.list({"product": product.id, "active": True}).data] == [
        once.id
    ]
    assert [p.id for p in client.v1.prices.list({"type": "recurring"}).data] == [monthly.id]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"product": "prod_missing", "currency": "usd", "unit_amount": 1}, "product"),
        ({"currency": "usd", "unit_amount": 100_000_000}, "unit_amount"),
        (
            {
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "month", "interval_count": 13},
            },
            "recurring[interval_count]",
        ),
        (
            {"currency": "usd", "unit_amount": 1, "recurring": {"interval": "fortnight"}},
            "recurring[interval]",
        ),
    ],
)
def test_prices_refuse_what_stripe_refuses(
    client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    product = client.v1.products.create({"name": "Pro Plan"})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.prices.create({"product": product.id, **params})
    assert refused.value.param == param


def test_coupons_keep_their_terms_and_can_be_deleted(client: stripe.StripeClient) -> None:
    redeem_by = int(time.time()) + 3600
    coupon = client.v1.coupons.create(
        {
            "percent_off": 12.5,
            "duration": "repeating",
            "duration_in_months": 3,
            "name": "Loyal",
            "redeem_by": redeem_by,
        }
    )
    assert (coupon.percent_off, coupon.duration_in_months, coupon.redeem_by) == (
        12.5,
        3,
        redeem_by,
    )
    assert coupon.name == "Loyal" and coupon.valid

    renamed = client.v1.coupons.update(coupon.id, {"name": "Loyal customers"})
    assert renamed.name == "Loyal customers"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.update(coupon.id, {"percent_off": 50})  # type: ignore[typeddict-unknown-key]

    deleted = client.v1.coupons.delete(coupon.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.coupons.retrieve(coupon.id)
    assert missing.value.http_status == 404


@pytest.mark.parametrize(
    "params",
    [
        {"duration": "repeating", "percent_off": 10},
        {"duration": "once", "amount_off": 100},
        {"duration": "once", "amount_off": 100, "currency": "usd", "percent_off": 5},
        {"duration": "forever", "percent_off": 120},
    ],
)
def test_coupons_refuse_incomplete_terms(
    client: stripe.StripeClient, params: dict[str, Any]
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create(params)  # type: ignore[arg-type]
